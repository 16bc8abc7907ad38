//! GCRA as redis-cell's `CL.THROTTLE` computes it, for drop-in compatibility.
//!
//! redis-cell works in nanoseconds: the emission interval is `period / count`
//! (computed in `f64` and truncated), the tolerance is `interval * (max_burst + 1)`,
//! and the state is the theoretical arrival time (TAT). This module reproduces those
//! numbers, with the server's clock instead of the host's.

use crate::decision::{Decision, Outcome, Request, RetryAfter};
use crate::error::{ArgumentError, at_most, positive};
use crate::time::Timestamp;
use core::time::Duration;

const NANOS_PER_SECOND: u64 = 1_000_000_000;
const NANOS_PER_MICRO: u128 = 1_000;
/// Intervals are signed 64-bit nanoseconds in redis-cell; stay inside them.
const MAX_NANOS: u64 = i64::MAX as u64;

/// A redis-cell throttle: bursts of `max_burst + 1`, `count` per `period_s` seconds.
///
/// ```
/// use redlimit_core::Throttle;
/// let policy = Throttle::new(15, 30, 60).unwrap();
/// assert_eq!(policy.limit(), 16);
/// assert!(Throttle::new(15, 0, 60).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Throttle {
    max_burst: u64,
    count: u64,
    period_s: u64,
}

/// What a throttle remembers: the theoretical arrival time in ns since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThrottleState {
    /// Theoretical arrival time, nanoseconds since the Unix epoch.
    pub tat_ns: u64,
}

impl Throttle {
    /// A policy, checked so that its intervals fit redis-cell's signed nanoseconds.
    ///
    /// # Errors
    /// A zero `count_per_period` or `period_s`, a rate faster than one per nanosecond,
    /// or a burst whose tolerance overflows.
    pub fn new(max_burst: u64, count: u64, period_s: u64) -> Result<Self, ArgumentError> {
        let count = positive("count_per_period", count)?;
        let period_s = positive("period_s", period_s)?;
        let period_s = at_most("period_s", period_s, MAX_NANOS / NANOS_PER_SECOND)?;
        let policy = Self {
            max_burst,
            count,
            period_s,
        };
        if policy.interval_ns() == 0 {
            let max = period_s * NANOS_PER_SECOND;
            return Err(ArgumentError::new(
                "count_per_period",
                format!("at most {max} (one per nanosecond)"),
            ));
        }
        if policy.tolerance_ns() > u128::from(MAX_NANOS) {
            let max = MAX_NANOS / policy.interval_ns() - 1;
            return Err(ArgumentError::new(
                "max_burst",
                format!("at most {max} at this rate"),
            ));
        }
        Ok(policy)
    }

    /// The burst beyond the first request.
    #[must_use]
    pub const fn max_burst(&self) -> u64 {
        self.max_burst
    }

    /// Requests per period.
    #[must_use]
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// The period in seconds.
    #[must_use]
    pub const fn period_s(&self) -> u64 {
        self.period_s
    }

    /// The limit redis-cell reports: `max_burst + 1`.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        self.max_burst.saturating_add(1)
    }

    /// Nanoseconds between two requests at the sustained rate, as redis-cell computes it.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    pub(crate) fn interval_ns(&self) -> u64 {
        ((self.period_s * NANOS_PER_SECOND) as f64 / self.count as f64) as u64
    }

    /// How far ahead of now the TAT may run: `interval * (max_burst + 1)`.
    pub(crate) fn tolerance_ns(&self) -> u128 {
        u128::from(self.interval_ns()) * (u128::from(self.max_burst) + 1)
    }

    /// Decides `request` at `now` against the TAT left by `previous` (`None`: no history).
    #[must_use]
    pub fn decide(
        &self,
        previous: Option<(&Self, &ThrottleState)>,
        now: Timestamp,
        request: Request,
    ) -> Outcome<ThrottleState> {
        let now_ns = now.as_nanos();
        let tat = self.current_tat(previous, now_ns);
        let interval = u128::from(self.interval_ns());
        let tolerance = self.tolerance_ns();
        let increment = interval * u128::from(request.cost);
        let new_tat = tat + increment;
        if new_tat > now_ns + tolerance {
            let retry_after = if increment <= tolerance {
                RetryAfter::After(nanos(new_tat - tolerance - now_ns))
            } else {
                RetryAfter::Never
            };
            let decision = self.decision(false, tat - now_ns, retry_after);
            return Outcome {
                decision,
                update: None,
            };
        }
        let decision = self.decision(true, new_tat - now_ns, RetryAfter::Now);
        let update = (!request.is_read_only()).then(|| ThrottleState {
            tat_ns: u64::try_from(new_tat).unwrap_or(u64::MAX),
        });
        Outcome { decision, update }
    }

    /// The TAT that applies at `now_ns`, in nanoseconds.
    pub(crate) fn current_tat(
        &self,
        previous: Option<(&Self, &ThrottleState)>,
        now_ns: u128,
    ) -> u128 {
        // A TAT in the past is the same as no key (redis-cell's key would have expired).
        let tat = previous.map_or(now_ns, |(_, state)| u128::from(state.tat_ns).max(now_ns));
        // Under another policy, the TAT is capped at a throttle used up at the earliest
        // moment the stored TAT can have been set (`tat - old tolerance`): a downgrade
        // never leaves a longer wait than a full burst at the new rate, and the cap does
        // not move with the clock (denied calls store nothing), so `retry_after` holds.
        match previous {
            Some((policy, state)) if policy != self => {
                let set_at = u128::from(state.tat_ns).saturating_sub(policy.tolerance_ns());
                tat.min((set_at + self.tolerance_ns()).max(now_ns))
            }
            _ => tat,
        }
    }

    /// A decision whose TAT lies `ttl` ns ahead of now.
    fn decision(&self, allowed: bool, ttl: u128, retry_after: RetryAfter) -> Decision {
        Decision {
            allowed,
            limit: self.limit(),
            remaining: self.remaining(ttl),
            retry_after,
            reset_after: nanos(ttl),
        }
    }

    /// redis-cell's `remaining`: `(tolerance - ttl) / interval` in whole microseconds,
    /// divided in `f64` and truncated. Sub-microsecond intervals, where redis-cell
    /// divides by zero, are divided in nanoseconds instead.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    fn remaining(&self, ttl: u128) -> u64 {
        let Some(next) = self.tolerance_ns().checked_sub(ttl) else {
            return 0;
        };
        let interval = u128::from(self.interval_ns());
        let (next, interval) = if interval >= NANOS_PER_MICRO {
            (
                crate::time::div_floor(next, NANOS_PER_MICRO),
                crate::time::div_floor(interval, NANOS_PER_MICRO),
            )
        } else {
            (next, interval)
        };
        (next as f64 / interval as f64) as u64
    }

    /// When `state` equals no key: its TAT.
    #[must_use]
    pub fn idle_at(&self, state: &ThrottleState) -> Timestamp {
        Timestamp::from_micros(state.tat_ns.div_ceil(1_000))
    }
}

fn nanos(value: u128) -> Duration {
    Duration::from_nanos(u64::try_from(value).unwrap_or(u64::MAX))
}

/// Seconds as redis-cell's reply rounds them: whole seconds, plus one when at
/// least a whole millisecond is left over.
#[must_use]
pub fn redis_cell_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_millis() > 0)
}

#[cfg(test)]
mod tests;
