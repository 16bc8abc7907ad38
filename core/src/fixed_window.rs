//! Fixed window aligned to the Unix epoch: windows are `[k * window_ms, (k + 1) * window_ms)`.

use crate::decision::{Decision, Outcome, Request, RetryAfter};
use crate::error::{ArgumentError, count, duration};
use crate::time::Timestamp;
use core::time::Duration;

/// At most `limit` units per epoch-aligned window of `window_ms`.
///
/// ```
/// use redlimit_core::FixedWindow;
/// let policy = FixedWindow::new(100, 60_000).unwrap();
/// assert_eq!(policy.limit(), 100);
/// assert!(FixedWindow::new(100, 0).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FixedWindow {
    limit: u64,
    window_ms: u64,
}

/// What a fixed window remembers: the end of the window its count belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowCount {
    /// End of the counted window, Unix milliseconds (exclusive).
    pub end_ms: u64,
    /// Units admitted in that window.
    pub count: u64,
}

impl FixedWindow {
    /// A policy.
    ///
    /// # Errors
    /// A zero argument, a `limit` above 2^62 or a `window_ms` above 10^13.
    pub fn new(limit: u64, window_ms: u64) -> Result<Self, ArgumentError> {
        Ok(Self {
            limit: count("limit", limit)?,
            window_ms: duration("window_ms", window_ms)?,
        })
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

    /// The count that applies at `now_ms`: the stored one while its window lasts (also
    /// when the clock moved back before it), else a new window starting empty.
    ///
    /// Under another policy than the stored one, the count is capped at the new limit and
    /// counts in the new window holding the start of the stored one (the earliest moment
    /// it can have been recorded): at worst a window just used up, and the same answer
    /// however often a denied caller retries.
    pub(crate) fn current(
        &self,
        previous: Option<(&Self, &WindowCount)>,
        now_ms: u64,
    ) -> WindowCount {
        let fresh = WindowCount {
            end_ms: self.end_of_window_at(now_ms),
            count: 0,
        };
        match previous {
            Some((policy, stored)) if policy == self && now_ms < stored.end_ms => *stored,
            Some((policy, stored)) if policy != self => {
                let recorded_from = stored.end_ms.saturating_sub(policy.window_ms);
                let carried = WindowCount {
                    end_ms: self.end_of_window_at(recorded_from).min(stored.end_ms),
                    count: stored.count.min(self.limit),
                };
                if now_ms < carried.end_ms {
                    carried
                } else {
                    fresh
                }
            }
            _ => fresh,
        }
    }

    /// The end of the window holding `ms`.
    fn end_of_window_at(&self, ms: u64) -> u64 {
        (ms - ms % self.window_ms).saturating_add(self.window_ms)
    }

    /// Decides `request` at `now` against the count left by `previous`.
    #[must_use]
    pub fn decide(
        &self,
        previous: Option<(&Self, &WindowCount)>,
        now: Timestamp,
        request: Request,
    ) -> Outcome<WindowCount> {
        let now_ms = now.as_micros() / 1_000;
        let window = self.current(previous, now_ms);
        let until_end = Duration::from_micros(
            window
                .end_ms
                .saturating_mul(1_000)
                .saturating_sub(now.as_micros()),
        );
        let after = window.count.saturating_add(request.cost);
        if after > self.limit {
            let retry_after = if request.cost > self.limit {
                RetryAfter::Never
            } else {
                RetryAfter::After(until_end)
            };
            let reset_after = if window.count > 0 {
                until_end
            } else {
                Duration::ZERO
            };
            let decision = Decision {
                allowed: false,
                limit: self.limit,
                remaining: self.limit.saturating_sub(window.count),
                retry_after,
                reset_after,
            };
            return Outcome {
                decision,
                update: None,
            };
        }
        let reset_after = if after > 0 { until_end } else { Duration::ZERO };
        let decision = Decision {
            allowed: true,
            limit: self.limit,
            remaining: self.limit - after,
            retry_after: RetryAfter::Now,
            reset_after,
        };
        let update = (!request.is_read_only()).then_some(WindowCount {
            end_ms: window.end_ms,
            count: after,
        });
        Outcome { decision, update }
    }

    /// When `state` equals no key: the end of its window.
    #[must_use]
    pub fn idle_at(&self, state: &WindowCount) -> Timestamp {
        Timestamp::from_millis(state.end_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at_ms(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        let policy = FixedWindow::new(2, 1_000).unwrap();
        let first = policy.decide(None, at_ms(10_250), Request::new(1));
        assert_eq!(
            first.update,
            Some(WindowCount {
                end_ms: 11_000,
                count: 1
            })
        );
        assert_eq!(first.decision.reset_after, Duration::from_millis(750));
        let state = first.update.unwrap();
        let second = policy.decide(Some((&policy, &state)), at_ms(10_900), Request::new(1));
        assert_eq!(second.decision.remaining, 0);
        let state = second.update.unwrap();
        let denied = policy.decide(Some((&policy, &state)), at_ms(10_999), Request::new(1));
        assert!(!denied.decision.allowed);
        assert_eq!(
            denied.decision.retry_after,
            RetryAfter::After(Duration::from_millis(1))
        );
        let next = policy.decide(Some((&policy, &state)), at_ms(11_000), Request::new(1));
        assert!(next.decision.allowed);
        assert_eq!(next.decision.remaining, 1);
    }

    #[test]
    fn a_cost_above_the_limit_never_succeeds() {
        let policy = FixedWindow::new(2, 1_000).unwrap();
        assert_eq!(
            policy
                .decide(None, at_ms(5), Request::new(3))
                .decision
                .retry_after,
            RetryAfter::Never
        );
    }

    #[test]
    fn a_clock_moving_back_keeps_the_count() {
        let policy = FixedWindow::new(1, 1_000).unwrap();
        let state = policy
            .decide(None, at_ms(5_500), Request::new(1))
            .update
            .unwrap();
        let earlier = policy.decide(Some((&policy, &state)), at_ms(4_000), Request::new(1));
        assert!(!earlier.decision.allowed);
    }

    proptest! {
        #[test]
        fn never_more_than_limit_in_any_aligned_window(
            limit in 1u64..10,
            window_ms in 1u64..5_000,
            steps in proptest::collection::vec((0u64..2_000_000, 0u64..4), 1..100),
        ) {
            let policy = FixedWindow::new(limit, window_ms).unwrap();
            let (mut now, mut state, mut admitted) = (1_000_000_000u64, None, std::collections::HashMap::new());
            for (advance_us, cost) in steps {
                now += advance_us;
                let outcome = policy.decide(state.as_ref().map(|s| (&policy, s)), Timestamp::from_micros(now), Request::new(cost));
                let window = now / 1_000 / window_ms;
                let used = admitted.entry(window).or_insert(0u64);
                // The reference: a plain count per window index.
                prop_assert_eq!(outcome.decision.allowed, *used + cost <= limit);
                if outcome.decision.allowed {
                    *used += cost;
                    prop_assert_eq!(outcome.decision.remaining, limit - *used);
                }
                prop_assert!(*used <= limit);
                if outcome.update.is_some() {
                    state = outcome.update;
                }
            }
        }
    }
}
