//! Concurrency leases: `RL.ACQUIRE key limit lease_ms lease_id` and
//! `RL.RELEASE key lease_id`.

use super::limit;
use crate::args::Args;
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString, bytes};
use crate::{clock, info, reply};
use redlimit_core::{Concurrency, Limiter, WrongAlgorithm};

/// Runs `RL.ACQUIRE`: takes or renews the lease `lease_id`.
pub fn acquire(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::ACQUIRE.call();
    let mut args = Args::new(argv, 4, 4)?;
    let key_name = args.raw()?;
    let policy = Concurrency::new(args.positive("limit")?, args.positive("lease_ms")?)?;
    let id = Concurrency::check_lease_id(bytes(args.raw()?))?;
    let mut key = ctx.open_key(key_name, true)?;
    let now = clock::now(ctx);
    let stored = key.limiter()?;
    let outcome = match Limiter::live(stored.as_ref(), now) {
        None => policy.acquire(None, now, id, false),
        Some(Limiter::Concurrency(_, leases)) => policy.acquire(Some(leases), now, id, false),
        Some(other) => {
            return Err(WrongAlgorithm {
                stored: other.algorithm(),
            }
            .into());
        }
    };
    if let Some(leases) = outcome.update {
        let limiter = Limiter::Concurrency(policy, Box::new(leases));
        limit::write_and_propagate(ctx, argv, key_name, &mut key, &limiter)?;
    }
    info::ACQUIRE.decided(outcome.decision.allowed);
    reply::decision(ctx, &outcome.decision);
    Ok(())
}

/// Runs `RL.RELEASE`: 1 if the lease was held (and is now released), else 0.
pub fn release(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::RELEASE.call();
    let mut args = Args::new(argv, 2, 2)?;
    let key_name = args.raw()?;
    let id = bytes(args.raw()?);
    let mut key = ctx.open_key(key_name, true)?;
    let now = clock::now(ctx);
    let stored = key.limiter()?;
    let (policy, (released, left)) = match Limiter::live(stored.as_ref(), now) {
        None => (None, (false, None)),
        Some(Limiter::Concurrency(policy, leases)) => (Some(*policy), leases.release(now, id)),
        Some(other) => {
            return Err(WrongAlgorithm {
                stored: other.algorithm(),
            }
            .into());
        }
    };
    match (policy, left) {
        (Some(_), Some(left)) if left.held().is_empty() => {
            key.delete();
            ctx.replicate_delete(key_name);
        }
        (Some(policy), Some(left)) => {
            let limiter = Limiter::Concurrency(policy, Box::new(left));
            limit::write_and_propagate(ctx, argv, key_name, &mut key, &limiter)?;
        }
        // A limiter key past its idle moment (no live lease left) is an absent key: it
        // goes now rather than at its expiry.
        (None, _) if stored.is_some() => {
            key.delete();
            ctx.replicate_delete(key_name);
        }
        _ => {}
    }
    ctx.reply_integer(i64::from(released));
    Ok(())
}
