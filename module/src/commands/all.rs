//! `RL.ALL numkeys key [key ...] policy [policy ...] [COST n | COSTS n1 … nk] [PEEK]
//! [MAXWAIT ms]`: one atomic, all-or-nothing decision over several limits, each with its
//! own cost; with `MAXWAIT`, one reservation across token buckets.

use super::limit;
use super::options::{self, Flag};
use super::policy::Accepted;
use crate::args::Args;
use crate::error::CommandError;
use crate::ffi::{Ctx, Key, RawString, bytes};
use crate::{clock, info, reply};
use redlimit_core::{AllRequest, MAX_ALL_LIMITS, Policy, check_all_max_wait, decide_each};

/// Runs `RL.ALL`: counts the request against every key iff every key allows it.
pub fn run(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    if ctx.is_keys_position_request() {
        report_keys(ctx, argv);
        return Ok(());
    }
    info::ALL_OF.call();
    let mut args = Args::new(argv, 3, usize::MAX)?;
    let numkeys = args.positive("numkeys")?;
    if numkeys > MAX_ALL_LIMITS {
        return Err(CommandError::Argument(format!(
            "numkeys must be at most {MAX_ALL_LIMITS}"
        )));
    }
    let numkeys = usize::try_from(numkeys)
        .ok()
        .filter(|&n| n < args.remaining().len())
        .ok_or(CommandError::Arity)?;
    let keys = args.remaining().get(..numkeys).ok_or(CommandError::Arity)?;
    for _ in keys {
        args.raw()?;
    }
    let policies: Vec<Policy> = (0..numkeys)
        .map(|index| policy(&mut args, index, numkeys))
        .collect::<Result<_, CommandError>>()?;
    let flags = [Flag::Cost, Flag::Costs, Flag::Peek, Flag::MaxWait];
    let options = options::parse_for_keys(&mut args, &flags, numkeys)?;
    let request = AllRequest {
        peek: options.request.peek,
        max_wait_ms: check_all_max_wait(&policies, options.request.max_wait_ms)?,
    };
    let cost_of = |index: usize| match &options.costs {
        Some(costs) => costs.get(index).copied().unwrap_or(0),
        None => options.request.cost,
    };
    let limits: Vec<(&[u8], Policy, u64)> = keys
        .iter()
        .zip(policies)
        .enumerate()
        .map(|(index, (&key, policy))| (bytes(key), policy, cost_of(index)))
        .collect();
    let read_only = request.peek || limits.iter().all(|(_, _, cost)| *cost == 0);

    // Decide key by key; a key named twice sees the state its earlier policy left.
    // Each distinct key is opened once, at its first limit, and written through that
    // handle (writable unless the request only asks).
    let now = clock::now(ctx);
    let writable = !read_only;
    let mut opened: Vec<Option<Key>> = (0..numkeys).map(|_| None).collect();
    let outcome = decide_each(&limits, now, request, |index, _| {
        let name = *keys.get(index).ok_or(CommandError::Internal)?;
        let slot = opened.get_mut(index).ok_or(CommandError::Internal)?;
        slot.insert(ctx.open_key(name, writable)?).limiter()
    })?;
    let written = outcome
        .updates
        .iter()
        .filter_map(|(index, limiter)| Some((*keys.get(*index)?, limiter)));
    let how = limit::propagation(argv, written);
    for (index, limiter) in &outcome.updates {
        let key_name = *keys.get(*index).ok_or(CommandError::Internal)?;
        let key = opened
            .get_mut(*index)
            .and_then(Option::as_mut)
            .ok_or(CommandError::Internal)?;
        limit::write(ctx, key_name, key, limiter, how)?;
    }
    if how == limit::Propagation::Replay && !outcome.updates.is_empty() {
        ctx.replicate_replay(clock::decided_at(), argv);
    }
    let (allowed, decisions) = (outcome.allowed, outcome.decisions);
    info::ALL_OF.decided(allowed);
    ctx.reply_array(1 + decisions.len());
    ctx.reply_integer(i64::from(allowed));
    for decision in &decisions {
        reply::decision(ctx, decision);
    }
    Ok(())
}

/// Tells the server where the keys are (`getkeys-api`): arguments 2 to 1 + numkeys.
/// Cluster routing asks this (key specs alone do not route a module command), so a
/// node answers `CROSSSLOT`, `MOVED`, `ASK` or `TRYAGAIN` as for any keyed command. An
/// invalid `numkeys` reports no key; running the command then answers the error.
fn report_keys(ctx: Ctx, argv: &[RawString]) {
    let Some(numkeys) = argv
        .get(1)
        .and_then(|&raw| crate::args::integer("numkeys", bytes(raw)).ok())
        .and_then(|n| usize::try_from(n).ok())
    else {
        return;
    };
    for pos in (2..argv.len()).take(numkeys) {
        ctx.key_at_pos(pos);
    }
}

/// Policy `index` of `count`: `TOKENBUCKET capacity refill_tokens refill_ms` |
/// `SLIDING limit window_ms [APPROX]` | `FIXED limit window_ms`.
fn policy(args: &mut Args<'_>, index: usize, count: usize) -> Result<Policy, CommandError> {
    let missing = || {
        CommandError::Argument(format!(
            "RL.ALL needs one policy per key: {count} keys but {index} policies"
        ))
    };
    let name = args.next_bytes().ok_or_else(missing)?;
    if index > 0
        && [&b"COST"[..], b"COSTS", b"PEEK", b"MAXWAIT"]
            .iter()
            .any(|option| name.eq_ignore_ascii_case(option))
    {
        return Err(missing());
    }
    super::policy::read(name, args, Accepted::Rates)?.ok_or_else(|| {
        CommandError::Syntax(format!(
            " near '{}' (policy {} of {count} must be TOKENBUCKET, SLIDING or FIXED)",
            crate::error::printable(name),
            index + 1
        ))
    })
}
