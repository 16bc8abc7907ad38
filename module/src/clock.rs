//! "Now" for a decision: the server clock plus the test offset, read once per command.

use crate::ffi::Ctx;
use redlimit_core::{Limiter, Timestamp};
use std::sync::atomic::{AtomicI64, Ordering};

/// `redlimit.clock-offset-ms`: added to the server clock for every decision.
pub static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// The largest offset accepted (about 317 years).
pub const MAX_CLOCK_OFFSET_MS: i64 = 10_000_000_000_000;

/// The decision time of the running command.
pub fn now(ctx: Ctx) -> Timestamp {
    let offset = CLOCK_OFFSET_MS
        .load(Ordering::Relaxed)
        .saturating_mul(1_000);
    let micros = ctx.server_micros().saturating_add(offset);
    Timestamp::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// The absolute expiry of a stored limiter, in Unix milliseconds: the moment it equals no
/// key. Derived from the state alone, so replicas and AOF replay compute the same value.
pub fn expire_at_ms(limiter: &Limiter) -> i64 {
    let millis = limiter.idle_at().as_micros().div_ceil(1_000);
    i64::try_from(millis).unwrap_or(i64::MAX)
}
