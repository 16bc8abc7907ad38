//! `RL.ADJUST key delta [policy]`: corrects a limiter once the real cost of a request is
//! known: a negative `delta` gives units back (never above full), a positive one takes
//! more (into a bounded debt). See `Policy::adjust` in `redlimit-core`.

use super::limit;
use super::policy::{self, Accepted};
use crate::args::{Args, integer};
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{clock, info, reply};
use redlimit_core::{Adjustment, Limiter, MAX_COUNT, WrongAlgorithm};

/// Runs `RL.ADJUST`. Replies what a request of cost 1 would get afterwards (the decision
/// reply), or nil when the key is absent or idle and no policy was given.
pub fn run(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::ADJUST.call();
    let mut args = Args::new(argv, 2, 7)?;
    let key_name = args.raw()?;
    let adjustment = delta(args.next_bytes().ok_or(CommandError::Arity)?)?;
    let given = match args.next_bytes() {
        None => None,
        Some(name) => Some(
            policy::read(name, &mut args, Accepted::RatesAndThrottle)?.ok_or_else(|| {
                CommandError::Syntax(format!(
                    " near '{}' (the policy must be TOKENBUCKET, THROTTLE, SLIDING or FIXED)",
                    crate::error::printable(name)
                ))
            })?,
        ),
    };
    if let Some(extra) = args.next_bytes() {
        return Err(CommandError::syntax_near(extra));
    }
    let mut key = ctx.open_key(key_name, true)?;
    let now = clock::now(ctx);
    let stored = key.limiter()?;
    let live = Limiter::live(stored.as_ref(), now);
    let Some(policy) = given.or_else(|| live.and_then(Limiter::policy)) else {
        if let Some(concurrency) = live {
            return Err(WrongAlgorithm {
                stored: concurrency.algorithm(),
            }
            .into());
        }
        ctx.reply_null();
        return Ok(());
    };
    let outcome = policy.adjust(live, now, adjustment)?;
    if let Some(limiter) = &outcome.update {
        limit::write_and_propagate(ctx, argv, key_name, &mut key, limiter)?;
    }
    reply::decision(ctx, &outcome.decision);
    Ok(())
}

/// `delta`: a base-10 integer, negative to refund, at most 2^62 either way.
fn delta(raw: &[u8]) -> Result<Adjustment, CommandError> {
    let refund = raw.starts_with(b"-");
    let magnitude = integer("delta", raw.strip_prefix(b"-").unwrap_or(raw)).map_err(|_| {
        CommandError::Argument(format!(
            "delta must be an integer between -{MAX_COUNT} and {MAX_COUNT}"
        ))
    })?;
    if magnitude > MAX_COUNT {
        return Err(CommandError::Argument(format!(
            "delta must be an integer between -{MAX_COUNT} and {MAX_COUNT}"
        )));
    }
    Ok(if refund {
        Adjustment::Refund(magnitude)
    } else {
        Adjustment::Charge(magnitude)
    })
}
