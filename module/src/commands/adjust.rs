//! `RL.ADJUST key delta [policy] [SINCE ms]`: corrects a limiter once the real cost of
//! a request is known: a negative `delta` gives units back (never above full; with
//! `SINCE`, never more than charging less at that time would have left), a positive one
//! takes more (into a bounded debt). See `Policy::adjust` in `redlimit-core`.

use super::limit;
use super::policy::{self, Accepted};
use crate::args::{Args, integer};
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{clock, info, reply};
use redlimit_core::{Adjustment, Limiter, MAX_COUNT, MAX_DURATION_MS, WrongAlgorithm};

/// Runs `RL.ADJUST`. Replies what a request of cost 1 would get afterwards (the decision
/// reply), or nil when the key is absent or idle and no policy was given.
pub fn run(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::ADJUST.call();
    let mut args = Args::new(argv, 2, 9)?;
    let key_name = args.raw()?;
    let mut adjustment = delta(args.next_bytes().ok_or(CommandError::Arity)?)?;
    let (mut given, mut since) = (None, None);
    while let Some(word) = args.next_bytes() {
        if word.eq_ignore_ascii_case(b"SINCE") {
            if since.is_some() {
                return Err(CommandError::Syntax(": SINCE given twice".to_owned()));
            }
            let raw = args.next_bytes().ok_or_else(|| {
                CommandError::Syntax(": SINCE needs a value (SINCE ms)".to_owned())
            })?;
            let ms = integer("SINCE", raw)?;
            if ms > MAX_DURATION_MS {
                return Err(CommandError::Argument(format!(
                    "SINCE must be at most {MAX_DURATION_MS}"
                )));
            }
            since = Some(ms);
        } else if given.is_none() {
            given = Some(
                policy::read(word, &mut args, Accepted::RatesAndThrottle)?.ok_or_else(|| {
                    CommandError::Syntax(format!(
                        " near '{}' (the policy must be TOKENBUCKET, THROTTLE, SLIDING or FIXED)",
                        crate::error::printable(word)
                    ))
                })?,
            );
        } else {
            return Err(CommandError::syntax_near(word));
        }
    }
    if let Some(ms) = since {
        adjustment = adjustment.since(ms);
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
