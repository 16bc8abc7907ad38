//! A circuit breaker: after repeated failures the server is left alone for a cool-down,
//! then one probe call decides whether it is back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Whether to call the server now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Call it.
    Call,
    /// Do not: the breaker is open until this moment.
    Skip(Instant),
}

/// A state change worth reporting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The breaker opened: calls are skipped for a cool-down.
    Opened,
    /// A call succeeded after the breaker had opened: it is closed again.
    Closed,
}

#[derive(Clone, Copy, Debug)]
enum State {
    /// Calls go through; this many have failed in a row.
    Closed { failures: u32 },
    /// Calls are skipped until `until`; then one probe goes through per cool-down.
    Open { until: Instant },
}

/// The breaker shared by every call of a limiter.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    /// True while the state is closed without failures, read without the lock by
    /// every call: only a failure (and the success after it) takes the lock.
    quiet: AtomicBool,
    threshold: u32,
    cool_down: Duration,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures (at least 1), for `cool_down`.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            quiet: AtomicBool::new(true),
            threshold: threshold.max(1),
            cool_down,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain data, valid whatever a panicking holder left.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closed, with no failure since the last success: every call may go to the
    /// server, and a success changes nothing. (A call racing the first failure may
    /// read it a moment late: it goes out as it would have a moment earlier.)
    pub fn is_quiet(&self) -> bool {
        self.quiet.load(Ordering::Acquire)
    }

    /// Whether a call made at `now` may go to the server. Once the cool-down is over,
    /// exactly one call per cool-down goes through as a probe.
    pub fn admit(&self, now: Instant) -> Admit {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Admit::Call,
            State::Open { until } if now < until => Admit::Skip(until),
            State::Open { .. } => {
                *state = State::Open {
                    until: now + self.cool_down,
                };
                Admit::Call
            }
        }
    }

    /// Whether calls made at `now` are skipped (open, within the cool-down).
    pub fn is_open(&self, now: Instant) -> bool {
        matches!(*self.state(), State::Open { until } if now < until)
    }

    /// A call succeeded.
    pub fn success(&self) -> Option<Change> {
        if self.is_quiet() {
            return None;
        }
        let mut state = self.state();
        let change = matches!(*state, State::Open { .. }).then_some(Change::Closed);
        *state = State::Closed { failures: 0 };
        self.quiet.store(true, Ordering::Release);
        change
    }

    /// A call failed at `now` because the server was unavailable.
    pub fn failure(&self, now: Instant) -> Option<Change> {
        let mut state = self.state();
        self.quiet.store(false, Ordering::Release);
        match *state {
            State::Closed { failures } if failures + 1 < self.threshold => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                None
            }
            State::Closed { .. } => {
                *state = State::Open {
                    until: now + self.cool_down,
                };
                Some(Change::Opened)
            }
            State::Open { .. } => {
                *state = State::Open {
                    until: now + self.cool_down,
                };
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_the_threshold_and_probes_once_per_cool_down() {
        let breaker = Breaker::new(2, COOL);
        let t0 = Instant::now();
        assert_eq!(breaker.admit(t0), Admit::Call);
        assert!(breaker.is_quiet());
        assert_eq!(breaker.failure(t0), None);
        assert!(!breaker.is_quiet());
        assert_eq!(breaker.failure(t0), Some(Change::Opened));
        assert_eq!(breaker.admit(t0), Admit::Skip(t0 + COOL));
        let later = t0 + COOL;
        assert_eq!(breaker.admit(later), Admit::Call, "the probe");
        assert_eq!(
            breaker.admit(later),
            Admit::Skip(later + COOL),
            "only one probe"
        );
        assert_eq!(breaker.failure(later), None);
        assert_eq!(breaker.admit(later + COOL), Admit::Call);
        assert_eq!(breaker.success(), Some(Change::Closed));
        assert!(breaker.is_quiet());
        assert_eq!(breaker.admit(later + COOL), Admit::Call);
    }

    #[test]
    fn a_success_clears_the_failure_count() {
        let breaker = Breaker::new(2, COOL);
        let t0 = Instant::now();
        breaker.failure(t0);
        assert_eq!(breaker.success(), None);
        assert_eq!(breaker.failure(t0), None);
        assert_eq!(breaker.admit(t0), Admit::Call);
    }
}
