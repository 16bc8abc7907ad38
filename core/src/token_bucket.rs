//! Token bucket with continuous refill and optional reservation (`MAXWAIT`).
//!
//! Exact integer arithmetic: one token is `refill_ms * 1000` *units* and every
//! microsecond adds `refill_tokens` units, so a level is an exact rational number of
//! tokens with denominator `refill_ms * 1000`. The state keeps the *deficit* (units
//! missing from a full bucket) and the moment it holds: the last change, or the latest
//! act time of a pending reservation, before which the line extrapolates backwards (see
//! [`BucketState`]).

use crate::decision::{Decision, Outcome, Request, RetryAfter};
use crate::error::{ArgumentError, at_most, count, duration, positive};
use crate::time::{Timestamp, ceil_micros, div_floor};
use core::time::Duration;

/// The largest amount of units a bucket or a borrowing may span: keeps every state in `u64`.
const MAX_UNITS: u128 = 1 << 62;
/// Microseconds per millisecond.
const MICROS_PER_MS: u128 = 1_000;

/// A token bucket policy: at most `capacity` tokens, `refill_tokens` more every `refill_ms`.
///
/// ```
/// use redlimit_core::TokenBucket;
/// let policy = TokenBucket::new(10, 1, 1_000).unwrap();
/// assert_eq!(policy.capacity(), 10);
/// assert!(TokenBucket::new(0, 1, 1_000).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenBucket {
    capacity: u64,
    refill_tokens: u64,
    refill_ms: u64,
}

/// What a token bucket remembers between requests: the line of its deficit over time.
///
/// From `at` on, the deficit is `deficit` less the refill since `at` (at least 0). An
/// `at` in the future is the latest act time of a pending reservation (`RL.ALL ...
/// MAXWAIT` charges every bucket as of its act time, `reserve.rs`): before it, the
/// deficit is the same line extrapolated backwards, `deficit + r(at - t)` with `r` the
/// refill per microsecond. It is never less than the exact deficit before `at` (the
/// refill the bucket could not have held until then is counted as taken) and exact from
/// `at` on; a refund before `at` knows how long the bucket still waits (`adjust.rs`).
/// A clock that moved back sees the same extrapolation: it grants nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BucketState {
    /// Units missing from a full bucket at `at` (above `capacity` tokens when borrowing).
    pub deficit: u64,
    /// When `deficit` holds: the last change, or the latest pending act time.
    pub at: Timestamp,
}

/// A bucket's deficit as a decision sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Level {
    /// Units missing from a full bucket at the decision time, pending reservations'
    /// padding included (see [`BucketState`]).
    pub(crate) deficit: u128,
    /// Where a new state is kept: the stored `at` when it is ahead (a pending act
    /// time), else the decision time.
    pub(crate) anchor: Timestamp,
}

impl TokenBucket {
    /// A policy, checked so that every decision computes exactly in 64-bit state.
    ///
    /// # Errors
    /// A zero argument, `capacity * refill_ms` above 2^62 / 1000, `refill_tokens`
    /// above 2^62 or `refill_ms` above 10^13.
    pub fn new(capacity: u64, refill_tokens: u64, refill_ms: u64) -> Result<Self, ArgumentError> {
        let refill_ms = duration("refill_ms", refill_ms)?;
        // refill_ms <= 10^13 keeps this at 461 or more, and refill_ms * 1000 (at most
        // 10^16) in 64 bits: no 128-bit division.
        let max_capacity = (1u64 << 62)
            .checked_div(refill_ms.saturating_mul(1_000))
            .unwrap_or(u64::MAX);
        let capacity = positive("capacity", capacity)?;
        let capacity = at_most("capacity", capacity, max_capacity).map_err(|_| {
            ArgumentError::new(
                "capacity",
                format!("at most {max_capacity} when refill_ms is {refill_ms}"),
            )
        })?;
        let refill_tokens = count("refill_tokens", refill_tokens)?;
        Ok(Self {
            capacity,
            refill_tokens,
            refill_ms,
        })
    }

    /// The most tokens the bucket holds.
    #[must_use]
    pub const fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Tokens added every `refill_ms`.
    #[must_use]
    pub const fn refill_tokens(&self) -> u64 {
        self.refill_tokens
    }

    /// The refill period in milliseconds.
    #[must_use]
    pub const fn refill_ms(&self) -> u64 {
        self.refill_ms
    }

    /// Checks a `MAXWAIT` for this policy: a duration like any other (at most 10^13 ms),
    /// and the borrowing it allows must stay computable.
    ///
    /// # Errors
    /// When `max_wait_ms` exceeds 10^13 or its refill exceeds 2^62 units.
    pub fn check_max_wait(&self, max_wait_ms: u64) -> Result<u64, ArgumentError> {
        at_most("MAXWAIT", max_wait_ms, self.max_wait_ms())
    }

    /// The longest `MAXWAIT` this policy accepts.
    pub(crate) fn max_wait_ms(&self) -> u64 {
        let computable = div_floor(MAX_UNITS, u128::from(self.refill_tokens) * MICROS_PER_MS);
        u64::try_from(computable)
            .unwrap_or(u64::MAX)
            .min(crate::MAX_DURATION_MS)
    }

    /// Whether `state` is one a command can leave: no deeper than a full bucket plus the
    /// most the longest `MAXWAIT` may borrow.
    #[must_use]
    pub fn holds(&self, state: &BucketState) -> bool {
        u128::from(state.deficit) <= self.floor(self.max_wait_ms())
    }

    /// Units in one token.
    pub(crate) fn unit(&self) -> u128 {
        u128::from(self.refill_ms) * MICROS_PER_MS
    }

    /// Units in a full bucket.
    pub(crate) fn full(&self) -> u128 {
        u128::from(self.capacity) * self.unit()
    }

    /// The deepest deficit a request may leave behind: a full bucket plus what
    /// `max_wait_ms` of refill repays.
    pub(crate) fn floor(&self, max_wait_ms: u64) -> u128 {
        let borrow = u128::from(max_wait_ms) * MICROS_PER_MS * u128::from(self.refill_tokens);
        self.full() + borrow.min(MAX_UNITS)
    }

    /// Time for the refill to cover `units`, rounded up to whole microseconds.
    pub(crate) fn time_to_refill(&self, units: u128) -> Duration {
        ceil_micros(units, u128::from(self.refill_tokens))
    }

    /// The level of `previous` at `now`, in this policy's units (see [`Level`]).
    ///
    /// A stored `at` in the future is the bucket's latest pending act time: the stored
    /// deficit holds from then on, and before it the line is extrapolated backwards
    /// (`deficit + r(at - now)`): a reservation's tokens are not there before it acts, and
    /// a clock that moved back grants nothing. Under another policy than the stored one,
    /// the deficit is capped at a full bucket at the stored moment: a downgrade leaves at
    /// worst a bucket just emptied, never a debt to repay.
    pub(crate) fn level(&self, previous: Option<(&Self, &BucketState)>, now: Timestamp) -> Level {
        let Some((policy, state)) = previous else {
            return Level {
                deficit: 0,
                anchor: now,
            };
        };
        let deficit = rescale(u128::from(state.deficit), policy.unit(), self.unit());
        // Capped as of the stored moment, so that repeated calls under the new policy
        // (denied ones store nothing) see the cap refill: `retry_after` stays honest.
        let deficit = if policy == self {
            deficit
        } else {
            deficit.min(self.full())
        };
        let refilled = self.refill_in(now.micros_since(state.at));
        let ahead = self.refill_in(state.at.micros_since(now));
        Level {
            deficit: deficit.saturating_sub(refilled).saturating_add(ahead),
            anchor: now.max(state.at),
        }
    }

    /// Units the refill adds in `micros` microseconds.
    pub(crate) fn refill_in(&self, micros: u64) -> u128 {
        u128::from(micros) * u128::from(self.refill_tokens)
    }

    /// The state to store for `deficit` units measured at `now`, kept at `anchor` (now or
    /// the latest pending act time): the same line, measured at the anchor (at least 0).
    pub(crate) fn anchored(&self, deficit: u128, anchor: Timestamp, now: Timestamp) -> BucketState {
        let deficit = deficit.saturating_sub(self.refill_in(anchor.micros_since(now)));
        BucketState {
            deficit: u64::try_from(deficit).unwrap_or(u64::MAX),
            at: anchor,
        }
    }

    /// Decides `request` at `now` against the bucket left by `previous` (`None`: a full bucket).
    #[must_use]
    pub fn decide(
        &self,
        previous: Option<(&Self, &BucketState)>,
        now: Timestamp,
        request: Request,
    ) -> Outcome<BucketState> {
        let Level { deficit, anchor } = self.level(previous, now);
        let wait = |units: u128| self.time_to_refill(units);
        let need = u128::from(request.cost) * self.unit();
        let floor = self.floor(request.max_wait_ms);
        let after = deficit + need;
        if after > floor {
            let retry_after = if need > floor {
                RetryAfter::Never
            } else {
                RetryAfter::After(wait(after - floor))
            };
            let decision = self.decision(false, deficit, retry_after, wait(deficit));
            return Outcome {
                decision,
                update: None,
            };
        }
        let retry_after = match after.checked_sub(self.full()) {
            Some(borrowed) if borrowed > 0 => RetryAfter::After(wait(borrowed)),
            _ => RetryAfter::Now,
        };
        let decision = self.decision(true, after, retry_after, wait(after));
        // Kept at the anchor: a pending act time stays marked for refunds (`adjust.rs`).
        let update = (!request.is_read_only()).then(|| self.anchored(after, anchor, now));
        Outcome { decision, update }
    }

    pub(crate) fn decision(
        &self,
        allowed: bool,
        deficit: u128,
        retry_after: RetryAfter,
        reset_after: Duration,
    ) -> Decision {
        let remaining = div_floor(self.full().saturating_sub(deficit), self.unit());
        Decision {
            allowed,
            limit: self.capacity,
            remaining: u64::try_from(remaining).unwrap_or(u64::MAX),
            retry_after,
            reset_after: if deficit == 0 {
                Duration::ZERO
            } else {
                reset_after
            },
        }
    }

    /// When `state` will be a full bucket again: from then on it equals no key at all.
    #[must_use]
    pub fn idle_at(&self, state: &BucketState) -> Timestamp {
        let micros = self.time_to_refill(u128::from(state.deficit)).as_micros();
        state
            .at
            .plus_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }
}

/// `units` counted in `from`-sized tokens, re-counted in `to`-sized tokens, rounded up
/// (a policy change never grants a fraction of a token that was spent).
fn rescale(units: u128, from: u128, to: u128) -> u128 {
    if from == to {
        return units;
    }
    let whole = units / from;
    let part = (units % from * to).div_ceil(from);
    whole
        .saturating_mul(to)
        .saturating_add(part)
        .min(2 * MAX_UNITS)
}

#[cfg(test)]
mod tests;
