//! Approximate sliding window: two epoch-aligned fixed windows, the previous one weighted
//! by its overlap with the sliding window. Constant memory, for very large limits.
//!
//! At `t`, with the current window starting at `start` and `elapsed = t - start`, the
//! estimate is `previous * (window - elapsed) / window + current`; a request of cost `c`
//! is allowed iff `estimate + c <= limit`, compared in exact integers.

use crate::decision::{Decision, Outcome, Request, RetryAfter};
use crate::error::{ArgumentError, at_most, positive};
use crate::time::Timestamp;
use core::time::Duration;

/// Limits and windows stay below 2^40 so every product fits in `u128` comfortably.
const MAX: u64 = 1 << 40;

/// At most about `limit` units in any window of `window_ms`, estimated in constant memory.
///
/// ```
/// use redlimit_core::SlidingCounter;
/// let policy = SlidingCounter::new(1_000_000, 60_000).unwrap();
/// assert_eq!(policy.limit(), 1_000_000);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlidingCounter {
    limit: u64,
    window_ms: u64,
}

/// The counts of the current and the previous window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowPair {
    /// Start of the current window, Unix milliseconds.
    pub start_ms: u64,
    /// Units admitted in the window before it.
    pub previous: u64,
    /// Units admitted in the current window.
    pub current: u64,
}

impl SlidingCounter {
    /// A policy.
    ///
    /// # Errors
    /// A zero argument, or one above 2^40.
    pub fn new(limit: u64, window_ms: u64) -> Result<Self, ArgumentError> {
        let limit = at_most("limit", positive("limit", limit)?, MAX)?;
        let window_ms = at_most("window_ms", positive("window_ms", window_ms)?, MAX)?;
        Ok(Self { limit, window_ms })
    }

    /// Units per window.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The window length in milliseconds.
    #[must_use]
    pub const fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// The pair of counts that applies at `now_ms`.
    fn current(&self, stored: Option<&WindowPair>, now_ms: u64) -> WindowPair {
        let start_ms = now_ms - now_ms % self.window_ms;
        match stored {
            // The clock moved back before the stored window: keep it as it is.
            Some(pair) if pair.start_ms >= start_ms => *pair,
            Some(pair) if pair.start_ms.saturating_add(self.window_ms) == start_ms => WindowPair {
                start_ms,
                previous: pair.current,
                current: 0,
            },
            _ => WindowPair {
                start_ms,
                previous: 0,
                current: 0,
            },
        }
    }

    /// The pair that applies at `now_ms`. Under another policy than the stored one the
    /// usage is capped at the new limit: with the same window, each count is capped; with
    /// another window, each count moves to the new window holding the start of its own.
    /// Either way a downgrade leaves at worst a window just used up, and the answer does
    /// not change however often a denied caller retries.
    pub(crate) fn carried_over(
        &self,
        previous: Option<(&Self, &WindowPair)>,
        now_ms: u64,
    ) -> WindowPair {
        match previous {
            None => self.current(None, now_ms),
            Some((policy, pair)) if policy == self => self.current(Some(pair), now_ms),
            Some((policy, pair)) if policy.window_ms == self.window_ms => {
                let pair = self.current(Some(pair), now_ms);
                WindowPair {
                    previous: pair.previous.min(self.limit),
                    current: pair.current.min(self.limit),
                    ..pair
                }
            }
            Some((policy, pair)) => {
                // Another window length: each stored count moves to the new window holding
                // the start of its own window (the earliest moment it can have been
                // recorded), then the pair is taken at now as usual.
                let start_of = |ms: u64| ms - ms % self.window_ms;
                let moved = [
                    (
                        pair.start_ms.saturating_sub(policy.window_ms),
                        pair.previous,
                    ),
                    (pair.start_ms, pair.current),
                ];
                // A clock behind the stored windows keeps the latest of them current (the
                // request then waits for the clock to come back to it).
                let latest = moved
                    .iter()
                    .filter(|(_, count)| *count > 0)
                    .map(|(recorded_from, _)| start_of(*recorded_from))
                    .max()
                    .unwrap_or(0);
                let start_ms = start_of(now_ms).max(latest);
                let mut carried = WindowPair {
                    start_ms,
                    previous: 0,
                    current: 0,
                };
                for (recorded_from, count) in moved {
                    let start = start_of(recorded_from);
                    if start == start_ms {
                        carried.current = carried.current.saturating_add(count);
                    } else if start.saturating_add(self.window_ms) == start_ms {
                        carried.previous = carried.previous.saturating_add(count);
                    }
                }
                WindowPair {
                    previous: carried.previous.min(self.limit),
                    current: carried.current.min(self.limit),
                    ..carried
                }
            }
        }
    }

    /// `estimate * window`, in exact integers, at `elapsed` ms into the current window.
    fn scaled_estimate(&self, pair: &WindowPair, elapsed: u64) -> u128 {
        let w = u128::from(self.window_ms);
        u128::from(pair.previous) * (w - u128::from(elapsed.min(self.window_ms)))
            + u128::from(pair.current) * w
    }

    /// Milliseconds from `elapsed` until a request of `cost` fits.
    fn wait(&self, pair: &WindowPair, elapsed: u64, cost: u64) -> u64 {
        let w = u128::from(self.window_ms);
        let budget = u128::from(self.limit) * w;
        let need = |pair: &WindowPair, elapsed: u64| {
            self.scaled_estimate(pair, elapsed) + u128::from(cost) * w
        };
        // Within the current window, the previous window's weight shrinks by `previous` per ms.
        if pair.previous > 0 && (u128::from(pair.current) + u128::from(cost)) * w <= budget {
            let excess = need(pair, elapsed) - budget;
            let wait = excess.div_ceil(u128::from(pair.previous));
            if elapsed as u128 + wait < w {
                return wait as u64;
            }
        }
        // In the next window, the current count becomes the weighted one.
        let to_next = self.window_ms - elapsed;
        let next = WindowPair {
            start_ms: 0,
            previous: pair.current,
            current: 0,
        };
        if next.previous == 0 {
            return to_next;
        }
        if u128::from(cost) * w <= budget {
            let excess = need(&next, 0).saturating_sub(budget);
            let wait = excess.div_ceil(u128::from(next.previous));
            if wait < w {
                return to_next + wait as u64;
            }
        }
        to_next + self.window_ms
    }

    /// Decides `request` at `now` against the counts left by `previous`.
    #[must_use]
    pub fn decide(
        &self,
        previous: Option<(&Self, &WindowPair)>,
        now: Timestamp,
        request: Request,
    ) -> Outcome<WindowPair> {
        let now_ms = now.as_micros() / 1_000;
        let pair = self.carried_over(previous, now_ms);
        let elapsed = now_ms.saturating_sub(pair.start_ms);
        let w = u128::from(self.window_ms);
        let fits = |cost: u64| {
            self.scaled_estimate(&pair, elapsed) + u128::from(cost) * w
                <= u128::from(self.limit) * w
        };
        if !fits(request.cost) {
            let retry_after = if request.cost > self.limit {
                RetryAfter::Never
            } else {
                // A clock behind the stored window waits for it to come back first.
                let ahead = pair.start_ms.saturating_sub(now_ms);
                RetryAfter::After(Duration::from_millis(ahead.saturating_add(self.wait(
                    &pair,
                    elapsed,
                    request.cost,
                ))))
            };
            let decision = self.decision(false, &pair, now_ms, retry_after);
            return Outcome {
                decision,
                update: None,
            };
        }
        let after = WindowPair {
            current: pair.current.saturating_add(request.cost),
            ..pair
        };
        let decision = self.decision(true, &after, now_ms, RetryAfter::Now);
        Outcome {
            decision,
            update: (!request.is_read_only()).then_some(after),
        }
    }

    fn decision(
        &self,
        allowed: bool,
        pair: &WindowPair,
        now_ms: u64,
        retry_after: RetryAfter,
    ) -> Decision {
        let elapsed = now_ms.saturating_sub(pair.start_ms);
        let used = self
            .scaled_estimate(pair, elapsed)
            .div_ceil(u128::from(self.window_ms));
        let remaining = u64::try_from(u128::from(self.limit).saturating_sub(used)).unwrap_or(0);
        let idle = self.idle_at_ms(pair);
        Decision {
            allowed,
            limit: self.limit,
            remaining,
            retry_after,
            reset_after: Duration::from_millis(idle.saturating_sub(now_ms)),
        }
    }

    fn idle_at_ms(&self, pair: &WindowPair) -> u64 {
        let windows = if pair.current > 0 {
            2
        } else if pair.previous > 0 {
            1
        } else {
            0
        };
        if windows == 0 {
            return 0;
        }
        pair.start_ms.saturating_add(windows * self.window_ms)
    }

    /// When `pair` equals no key: both windows have slid out.
    #[must_use]
    pub fn idle_at(&self, pair: &WindowPair) -> Timestamp {
        Timestamp::from_millis(self.idle_at_ms(pair))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_shorter_window_behind_the_clock_waits_for_the_clock() {
        // Found by the live fuzzer: a window change while the clock is behind the stored
        // window announced a retry that was still denied.
        let at = Timestamp::from_millis;
        let old = SlidingCounter::new(1, 1_000).unwrap();
        let stored = old
            .decide(None, at(100_000), Request::new(1))
            .update
            .unwrap();
        let new = SlidingCounter::new(1, 600).unwrap();
        let denied = new.decide(Some((&old, &stored)), at(90_000), Request::new(1));
        assert!(!denied.decision.allowed);
        let RetryAfter::After(wait) = denied.decision.retry_after else {
            panic!("{denied:?}")
        };
        let retry = at(90_000 + u64::try_from(wait.as_millis()).unwrap());
        let again = new.decide(Some((&old, &stored)), retry, Request::new(1));
        assert!(again.decision.allowed, "{denied:?} then {again:?}");
    }

    fn at_ms(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn the_previous_window_weighs_by_its_overlap() {
        let policy = SlidingCounter::new(10, 1_000).unwrap();
        let pair = WindowPair {
            start_ms: 0,
            previous: 0,
            current: 10,
        };
        // At 1250, a quarter into the next window: 10 * 0.75 = 7.5 estimated, 2 fit.
        let d = policy
            .decide(Some((&policy, &pair)), at_ms(1_250), Request::new(2))
            .decision;
        assert!(d.allowed);
        let d = policy
            .decide(Some((&policy, &pair)), at_ms(1_250), Request::new(3))
            .decision;
        assert!(!d.allowed);
        // 10 * (1 - e/1000) + 3 <= 10  <=>  e >= 300: 50 ms from 1250.
        assert_eq!(d.retry_after, RetryAfter::After(Duration::from_millis(50)));
        assert_eq!(d.reset_after, Duration::from_millis(750));
    }

    #[test]
    fn a_clock_behind_the_stored_window_waits_for_it() {
        let policy = SlidingCounter::new(1, 1_000).unwrap();
        let pair = WindowPair {
            start_ms: 100_000,
            previous: 0,
            current: 1,
        };
        let d = policy
            .decide(Some((&policy, &pair)), at_ms(50_000), Request::new(1))
            .decision;
        // The count is 50 s ahead, and weighs until the window after next begins.
        assert_eq!(
            d.retry_after,
            RetryAfter::After(Duration::from_millis(50_000 + 2_000))
        );
        assert_eq!(d.reset_after, Duration::from_millis(52_000));
    }

    /// Brute force: the first millisecond at which the request fits.
    fn first_fit(policy: &SlidingCounter, pair: &WindowPair, now_ms: u64, cost: u64) -> u64 {
        (1..=3 * policy.window_ms)
            .find(|wait| {
                policy
                    .decide(
                        Some((policy, pair)),
                        at_ms(now_ms + wait),
                        Request {
                            peek: true,
                            ..Request::new(cost)
                        },
                    )
                    .decision
                    .allowed
            })
            .unwrap()
    }

    proptest! {
        #[test]
        fn retry_after_is_the_first_instant_that_fits(
            limit in 1u64..20,
            window_ms in 1u64..400,
            previous in 0u64..25,
            current in 0u64..25,
            offset in 0u64..400,
            cost in 1u64..20,
        ) {
            prop_assume!(cost <= limit);
            let policy = SlidingCounter::new(limit, window_ms).unwrap();
            let pair = WindowPair { start_ms: 10 * window_ms, previous, current };
            let now = pair.start_ms + offset % window_ms;
            let d = policy.decide(Some((&policy, &pair)), at_ms(now), Request::new(cost)).decision;
            if !d.allowed {
                let RetryAfter::After(wait) = d.retry_after else { panic!() };
                prop_assert_eq!(wait.as_millis() as u64, first_fit(&policy, &pair, now, cost));
            }
        }

        #[test]
        fn never_more_than_limit_in_one_fixed_window(
            limit in 1u64..20,
            window_ms in 1u64..2_000,
            steps in proptest::collection::vec((0u64..1_000, 1u64..4), 1..100),
        ) {
            let policy = SlidingCounter::new(limit, window_ms).unwrap();
            let (mut now, mut pair, mut per_window) = (0u64, None, std::collections::HashMap::new());
            for (advance, cost) in steps {
                now += advance;
                let outcome = policy.decide(pair.as_ref().map(|p| (&policy, p)), at_ms(now), Request::new(cost));
                if outcome.decision.allowed {
                    *per_window.entry(now / window_ms).or_insert(0) += cost;
                    pair = outcome.update;
                }
                prop_assert!(per_window.values().all(|&used| used <= limit));
            }
        }
    }
}
