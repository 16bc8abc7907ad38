//! Adjusting a limiter after the fact (`RL.ADJUST`): give units back once the real cost
//! is known to be lower than what was charged, or take more when it was higher.
//!
//! - A **refund** never lifts a limiter above full: it takes back at most what is
//!   counted (token bucket: deficit down to 0; throttle: TAT down to now; windows:
//!   counts down to 0, an exact log from its oldest entries).
//! - A refund **of a charge made `since_ms` ago** ([`Adjustment::RefundOf`]) never
//!   gives back more than charging less at that time would have left: a token bucket or
//!   throttle charged less may have been full meanwhile and lost refill it could not
//!   hold, at most `since_ms` of refill, so the refund is reduced by that; a fixed or
//!   `APPROX` window gives back only from the window the charge was counted in. Without
//!   `since_ms` a refund assumes the limiter was never full since the charge (exact for a
//!   busy limiter, generous for one that refilled to full meanwhile).
//! - A token bucket **in debt** (below zero tokens: `MAXWAIT` reservations pending) takes
//!   no refund: the pending reservations were planned with the charge (or with the
//!   reservation being cancelled), and a bucket charged less could have been full before
//!   they act, so the refunded tokens might not exist by the time they could be used.
//!   Such a refund is dropped (never over-credits); refunds count again once the queue
//!   has drained.
//! - A token bucket whose state is **anchored ahead** at `A` (the latest act time of a
//!   reservation that waits for *another* bucket of its `RL.ALL`, see
//!   [`BucketState`]) holds, before `A`, the refill it could not have held until the
//!   reservation acts as taken. A bucket charged `u` less might have been full since
//!   the charge and until `A`, losing refill: the difference between the two shrinks by
//!   at most the refill rate, from `u` at the charge. So a refund before `A` gives back
//!   `u - r(since + (A - now))` (at least 0), applied to the deficit at `A` (at least
//!   0): from then on the bucket never holds more than one charged the real costs, and
//!   before `A` neither (until `A` the difference is still at least the reduced refund).
//!   Charges stay anchored too.
//! - A **charge** is recorded even when it does not fit (the work was done), into a
//!   bounded debt: a token bucket down to `-capacity` tokens (a deficit of two full
//!   buckets), a throttle to a TAT two bursts ahead of now. Windows have no debt: their
//!   usage stops at the limit, so the window stays used up until its units leave it. A
//!   limiter already deeper (a reservation) keeps its depth. The part of a charge beyond
//!   the bound is not recorded.

use crate::decision::{Outcome, Request};
use crate::fixed_window::{FixedWindow, WindowCount};
use crate::limiter::{Limiter, Policy, WrongAlgorithm};
use crate::sliding_counter::{SlidingCounter, WindowPair};
use crate::sliding_log::{SlidingLog, SlidingWindow};
use crate::throttle::{Throttle, ThrottleState};
use crate::time::Timestamp;
use crate::token_bucket::{BucketState, Level, TokenBucket};

/// A correction to a limiter's usage, in the policy's units (tokens, requests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Adjustment {
    /// Give back this many units (a call used less than it was charged).
    Refund(u64),
    /// Give back this many units of a charge made `since_ms` ago: only what the limiter
    /// can still owe of it (see [`Policy::adjust`]), never more than the exact refund.
    RefundOf {
        /// Units to give back.
        units: u64,
        /// How long ago the refunded charge counted (its act time), in milliseconds.
        since_ms: u64,
    },
    /// Take this many more units (a call used more than it was charged).
    Charge(u64),
}

impl Adjustment {
    /// The adjustment of a signed `delta`: negative refunds, positive charges.
    ///
    /// ```
    /// use redlimit_core::Adjustment;
    /// assert_eq!(Adjustment::from_delta(-5), Adjustment::Refund(5));
    /// assert_eq!(Adjustment::from_delta(7), Adjustment::Charge(7));
    /// ```
    #[must_use]
    pub const fn from_delta(delta: i64) -> Self {
        if delta < 0 {
            Self::Refund(delta.unsigned_abs())
        } else {
            Self::Charge(delta.unsigned_abs())
        }
    }

    /// This adjustment, a refund of a charge made `since_ms` ago (a charge is unchanged).
    ///
    /// ```
    /// use redlimit_core::Adjustment;
    /// assert_eq!(
    ///     Adjustment::from_delta(-5).since(300),
    ///     Adjustment::RefundOf { units: 5, since_ms: 300 }
    /// );
    /// ```
    #[must_use]
    pub const fn since(self, since_ms: u64) -> Self {
        match self {
            Self::Refund(units) | Self::RefundOf { units, .. } => {
                Self::RefundOf { units, since_ms }
            }
            Self::Charge(units) => Self::Charge(units),
        }
    }

    /// Units to take back and how long ago their charge counted (0: unknown, as now).
    const fn refund(self) -> Option<(u64, u64)> {
        match self {
            Self::Refund(units) => Some((units, 0)),
            Self::RefundOf { units, since_ms } => Some((units, since_ms)),
            Self::Charge(_) => None,
        }
    }
}

impl Policy {
    /// Applies `adjustment` at `now` to a key holding `stored` (`None`: a full limiter),
    /// under this policy (a policy change carries the usage over as a decision does).
    /// The outcome's decision is what a request of cost 1 would get afterwards; its
    /// update, the limiter to store (`None`: nothing changed).
    ///
    /// ```
    /// use redlimit_core::{Adjustment, Policy, Request, Timestamp, TokenBucket};
    /// let policy = Policy::TokenBucket(TokenBucket::new(1_000, 1_000, 60_000).unwrap());
    /// let now = Timestamp::from_millis(1_700_000_000_000);
    /// let charged = policy.decide(None, now, Request::new(900)).unwrap().update;
    /// // The call used 300 tokens: 600 come back (700 left, 699 after a cost of 1).
    /// let refunded = policy.adjust(charged.as_ref(), now, Adjustment::Refund(600)).unwrap();
    /// assert_eq!(refunded.decision.remaining, 699);
    /// // A refund never lifts the bucket above full.
    /// let full = policy.adjust(refunded.update.as_ref(), now, Adjustment::Refund(5_000)).unwrap();
    /// assert_eq!(full.decision.remaining, 999);
    /// ```
    ///
    /// # Errors
    /// [`WrongAlgorithm`] when `stored` holds another algorithm.
    pub fn adjust(
        &self,
        stored: Option<&Limiter>,
        now: Timestamp,
        adjustment: Adjustment,
    ) -> Result<Outcome<Limiter>, WrongAlgorithm> {
        let live = Limiter::live(stored, now);
        let wrong = |other: &Limiter| WrongAlgorithm {
            stored: other.algorithm(),
        };
        let update = match (*self, live) {
            (Self::TokenBucket(p), None) => bucket(p, None, now, adjustment),
            (Self::TokenBucket(p), Some(Limiter::TokenBucket(old, s))) => {
                bucket(p, Some((old, s)), now, adjustment)
            }
            (Self::Throttle(p), None) => throttle(p, None, now, adjustment),
            (Self::Throttle(p), Some(Limiter::Throttle(old, s))) => {
                throttle(p, Some((old, s)), now, adjustment)
            }
            (Self::Fixed(p), None) => fixed(p, None, now, adjustment),
            (Self::Fixed(p), Some(Limiter::Fixed(old, s))) => {
                fixed(p, Some((old, s)), now, adjustment)
            }
            (Self::Sliding(p), None) => sliding(p, None, now, adjustment),
            (Self::Sliding(p), Some(Limiter::Sliding(old, s))) => {
                sliding(p, Some((old, s)), now, adjustment)
            }
            (Self::SlidingApprox(p), None) => approx(p, None, now, adjustment),
            (Self::SlidingApprox(p), Some(Limiter::SlidingApprox(old, s))) => {
                approx(p, Some((old, s)), now, adjustment)
            }
            (_, Some(other)) => return Err(wrong(other)),
        };
        let status = Request {
            peek: true,
            ..Request::new(1)
        };
        let after = update.as_ref().or(live);
        let decision = self.decide(after, now, status)?.decision;
        Ok(Outcome { decision, update })
    }
}

impl Limiter {
    /// The policy this limiter was last changed with; `None` for a concurrency limit
    /// (leases are given back with `RL.RELEASE`, not adjusted) and a usage counter (it
    /// limits nothing).
    #[must_use]
    pub fn policy(&self) -> Option<Policy> {
        Some(match self {
            Self::TokenBucket(p, _) => Policy::TokenBucket(*p),
            Self::Throttle(p, _) => Policy::Throttle(*p),
            Self::Fixed(p, _) => Policy::Fixed(*p),
            Self::Sliding(p, _) => Policy::Sliding(*p),
            Self::SlidingApprox(p, _) => Policy::SlidingApprox(*p),
            Self::Concurrency(..) | Self::Usage(..) => return None,
        })
    }
}

/// `value` moved by `adjustment` (scaled by `unit`), at least 0, and for a charge at
/// most `max(value, ceiling)`. A refund of a charge made `since` ago gives back less
/// `lost(since)`: the most that a limiter charged less could have lost meanwhile by
/// being full (refill it could not hold).
fn moved(
    value: u128,
    adjustment: Adjustment,
    unit: u128,
    ceiling: u128,
    lost: impl Fn(u64) -> u128,
) -> u128 {
    match adjustment.refund() {
        Some((n, since_ms)) => {
            let refund = (u128::from(n) * unit).saturating_sub(lost(since_ms));
            value.saturating_sub(refund)
        }
        None => {
            let Adjustment::Charge(n) = adjustment else {
                return value;
            };
            (value + u128::from(n) * unit).min(value.max(ceiling))
        }
    }
}

fn bucket(
    p: TokenBucket,
    previous: Option<(&TokenBucket, &BucketState)>,
    now: Timestamp,
    adjustment: Adjustment,
) -> Option<Limiter> {
    let Level { deficit, anchor } = p.level(previous, now);
    // In debt, reservations may be pending: a refund applied now would count as tokens
    // from now until they act, which a bucket charged less could not have held if it was
    // full meanwhile. It is not given back (see the module docs).
    if deficit > p.full() && adjustment.refund().is_some() {
        return None;
    }
    let ceiling = (2 * p.full()).min(p.floor(p.max_wait_ms()));
    // A bucket charged less may have been full, losing refill, since the charge and
    // until its latest pending act time (the anchor): the refund comes back from then.
    let pending = anchor.micros_since(now);
    let lost = |ms: u64| p.refill_in(ms.saturating_mul(1_000).saturating_add(pending));
    let after = moved(deficit, adjustment, p.unit(), ceiling, lost);
    let before = p.anchored(deficit, anchor, now);
    let state = p.anchored(after, anchor, now);
    (state != before).then_some(Limiter::TokenBucket(p, state))
}

fn throttle(
    p: Throttle,
    previous: Option<(&Throttle, &ThrottleState)>,
    now: Timestamp,
    adjustment: Adjustment,
) -> Option<Limiter> {
    let now_ns = now.as_nanos();
    let tat = p.current_tat(previous, now_ns);
    // In nanoseconds ahead of now: the usage a TAT stands for.
    let ahead = tat - now_ns;
    let ceiling = 2 * p.tolerance_ns();
    let elapsed = |ms: u64| u128::from(ms) * 1_000_000;
    let after = moved(
        ahead,
        adjustment,
        u128::from(p.interval_ns()),
        ceiling,
        elapsed,
    );
    (after != ahead).then(|| {
        let tat_ns = u64::try_from(now_ns + after).unwrap_or(u64::MAX);
        Limiter::Throttle(p, ThrottleState { tat_ns })
    })
}

fn fixed(
    p: FixedWindow,
    previous: Option<(&FixedWindow, &WindowCount)>,
    now: Timestamp,
    adjustment: Adjustment,
) -> Option<Limiter> {
    let now_ms = now.as_micros() / 1_000;
    let window = p.current(previous, now_ms);
    let count = u128::from(window.count);
    // A charge counted in a window that has ended left with it: nothing to give back.
    let start = window.end_ms.saturating_sub(p.window_ms());
    let in_window = |since_ms: u64| {
        if now_ms.saturating_sub(since_ms) >= start {
            0
        } else {
            u128::MAX
        }
    };
    let after = moved(count, adjustment, 1, u128::from(p.limit()), in_window);
    (after != count).then(|| {
        let count = u64::try_from(after).unwrap_or(u64::MAX);
        Limiter::Fixed(p, WindowCount { count, ..window })
    })
}

fn sliding(
    p: SlidingWindow,
    previous: Option<(&SlidingWindow, &SlidingLog)>,
    now: Timestamp,
    adjustment: Adjustment,
) -> Option<Limiter> {
    let now_ms = now.as_micros() / 1_000;
    let log = p.current(previous, now_ms);
    let total = log.total();
    let log = match (adjustment.refund(), adjustment) {
        (Some((n, _)), _) if n > 0 && total > 0 => log.refunded(n),
        (None, Adjustment::Charge(n)) if n > 0 && total < p.limit() => {
            log.with_entry(now_ms, n.min(p.limit() - total))
        }
        _ => return None,
    };
    Some(Limiter::Sliding(p, Box::new(log)))
}

fn approx(
    p: SlidingCounter,
    previous: Option<(&SlidingCounter, &WindowPair)>,
    now: Timestamp,
    adjustment: Adjustment,
) -> Option<Limiter> {
    let now_ms = now.as_micros() / 1_000;
    let pair = p.carried_over(previous, now_ms);
    let after = match (adjustment.refund(), adjustment) {
        // From the window the charge was counted in: the current one, then the previous
        // one when its time is unknown; nothing when that window has slid out.
        (Some((n, since_ms)), _) => {
            let charged_ms = now_ms.saturating_sub(since_ms);
            let (from_current, from_previous) = if charged_ms >= pair.start_ms {
                let from_current = n.min(pair.current);
                let rest = if since_ms == 0 { n - from_current } else { 0 };
                (from_current, rest.min(pair.previous))
            } else if charged_ms.saturating_add(p.window_ms()) >= pair.start_ms {
                (0, n.min(pair.previous))
            } else {
                (0, 0)
            };
            WindowPair {
                current: pair.current - from_current,
                previous: pair.previous - from_previous,
                ..pair
            }
        }
        (None, Adjustment::Charge(n)) => WindowPair {
            current: pair
                .current
                .saturating_add(n)
                .min(pair.current.max(p.limit())),
            ..pair
        },
        (None, _) => pair,
    };
    (after != pair).then_some(Limiter::SlidingApprox(p, after))
}
