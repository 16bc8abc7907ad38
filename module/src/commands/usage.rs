//! Usage counters for reporting: `RL.USAGE.ADD key amount bucket_ms buckets` and
//! `RL.USAGE key` (see `UsageShape` in `redlimit-core`).
//!
//! A counter is a limiter kind of its own in the module's type: it persists, replicates
//! as state (or as the call at its decision time, whichever is smaller) and expires by
//! itself when its newest bucket leaves the ring. Each call walks at most
//! `MAX_USAGE_BUCKETS` buckets.

use super::limit;
use crate::args::Args;
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{clock, info, reply};
use redlimit_core::{Limiter, MAX_USAGE_RECORD, UsageError, UsageShape, WrongAlgorithm};

/// Runs `RL.USAGE.ADD`: adds `amount` to the bucket of now. Replies the total over the
/// ring afterwards (an integer). An amount of 0 only reads that total.
pub fn add(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::USAGE_ADD.call();
    let mut args = Args::new(argv, 4, 4)?;
    let key_name = args.raw()?;
    let amount = args.integer("amount")?;
    if amount > MAX_USAGE_RECORD {
        return Err(CommandError::Argument(format!(
            "amount must be at most {MAX_USAGE_RECORD}"
        )));
    }
    let shape = UsageShape::new(args.positive("bucket_ms")?, args.positive("buckets")?)?;
    let mut key = ctx.open_key(key_name, amount > 0)?;
    let now = clock::now(ctx);
    let stored = key.limiter()?;
    let recorded = shape.record(stored.as_ref(), now, amount)?;
    if let Some(limiter) = &recorded.update {
        limit::write_and_propagate(ctx, argv, key_name, &mut key, limiter)?;
    }
    ctx.reply_integer(reply::saturating_i64(recorded.total));
    Ok(())
}

/// Runs `RL.USAGE`: every bucket of the ring, oldest first, as a flat array of
/// `bucket_start_ms, amount` pairs (the last pair is the bucket of now); an empty array
/// for an absent or idle key. The same array under RESP2 and RESP3.
pub fn read(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::USAGE.call();
    let mut args = Args::new(argv, 1, 1)?;
    let mut key = ctx.open_key(args.raw()?, false)?;
    let now = clock::now(ctx);
    let stored = key.limiter()?;
    let buckets = match Limiter::live(stored.as_ref(), now) {
        None => Vec::new(),
        Some(Limiter::Usage(shape, counted)) => shape.read(counted, now),
        Some(other) => {
            return Err(WrongAlgorithm {
                stored: other.algorithm(),
            }
            .into());
        }
    };
    ctx.reply_array(buckets.len().saturating_mul(2));
    for (start_ms, amount) in buckets {
        ctx.reply_integer(reply::saturating_i64(start_ms));
        ctx.reply_integer(reply::saturating_i64(amount));
    }
    Ok(())
}

impl From<UsageError> for CommandError {
    fn from(error: UsageError) -> Self {
        match error {
            UsageError::WrongAlgorithm(wrong) => Self::WrongType(Some(wrong)),
            UsageError::Shape(mismatch) => Self::Argument(mismatch.to_string()),
        }
    }
}
