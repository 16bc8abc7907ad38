//! "Now" for a decision: the server clock plus the test offset, read once per command.

use crate::ffi::Ctx;
use redlimit_core::{Limiter, Timestamp};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// `redlimit.clock-offset-ms`: added to the server clock for every decision.
pub static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// The largest offset accepted (about 317 years).
pub const MAX_CLOCK_OFFSET_MS: i64 = 10_000_000_000_000;

/// The decision time `RL.REPLAY` imposes on the command it runs (0: none).
static REPLAYED_AT: AtomicU64 = AtomicU64::new(0);
/// The decision time of the last command that read the clock: what `RL.REPLAY` carries.
static DECIDED_AT: AtomicU64 = AtomicU64::new(0);

/// The decision time of the running command: the replayed time under `RL.REPLAY`, else
/// the server clock plus the test offset.
pub fn now(ctx: Ctx) -> Timestamp {
    let replayed = REPLAYED_AT.load(Ordering::Relaxed);
    let micros = if replayed > 0 {
        replayed
    } else {
        server_now(ctx).as_micros()
    };
    DECIDED_AT.store(micros, Ordering::Relaxed);
    Timestamp::from_micros(micros)
}

/// The server clock plus the test offset.
pub fn server_now(ctx: Ctx) -> Timestamp {
    let offset = CLOCK_OFFSET_MS
        .load(Ordering::Relaxed)
        .saturating_mul(1_000);
    let micros = ctx.server_micros().saturating_add(offset);
    Timestamp::from_micros(u64::try_from(micros).unwrap_or(0))
}

/// The time the running command decided at, in microseconds.
pub fn decided_at() -> u64 {
    DECIDED_AT.load(Ordering::Relaxed)
}

/// Runs `f` with the decision time fixed at `micros` (commands run one at a time).
pub fn replayed_at<R>(micros: u64, f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            REPLAYED_AT.store(0, Ordering::Relaxed);
        }
    }
    REPLAYED_AT.store(micros.max(1), Ordering::Relaxed);
    let _restore = Restore;
    f()
}

/// The absolute expiry of a stored limiter, in Unix milliseconds: the moment it equals no
/// key. Derived from the state alone, so replicas and AOF replay compute the same value.
pub fn expire_at_ms(limiter: &Limiter) -> i64 {
    let millis = limiter.idle_at().as_micros().div_ceil(1_000);
    i64::try_from(millis).unwrap_or(i64::MAX)
}
