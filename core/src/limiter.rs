//! Every algorithm behind one policy type and one stored-limiter type.

use crate::decision::{Decision, Outcome, Request};
use crate::throttle::{Throttle, ThrottleState};
use crate::time::Timestamp;
use crate::token_bucket::{BucketState, TokenBucket};
use core::fmt;

/// The algorithms a limiter key can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// [`TokenBucket`].
    TokenBucket,
    /// [`Throttle`] (redis-cell GCRA).
    Throttle,
}

impl Algorithm {
    /// The name `RL.STATUS` reports: the command name without `RL.`, lower case.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::TokenBucket => "tokenbucket",
            Self::Throttle => "throttle",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy of any algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    /// A token bucket.
    TokenBucket(TokenBucket),
    /// A redis-cell throttle.
    Throttle(Throttle),
}

/// A key's stored limiter: the policy that last changed it and its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Limiter {
    /// A token bucket and its deficit.
    TokenBucket(TokenBucket, BucketState),
    /// A throttle and its TAT.
    Throttle(Throttle, ThrottleState),
}

/// The stored limiter belongs to another algorithm than the policy asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrongAlgorithm {
    /// The algorithm the key holds.
    pub stored: Algorithm,
}

impl fmt::Display for WrongAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the key holds a {} limiter", self.stored)
    }
}

impl std::error::Error for WrongAlgorithm {}

impl Policy {
    /// The algorithm of this policy.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        match self {
            Self::TokenBucket(_) => Algorithm::TokenBucket,
            Self::Throttle(_) => Algorithm::Throttle,
        }
    }

    /// Decides `request` at `now` for a key holding `stored` (`None`: no key).
    ///
    /// The outcome's update is the limiter to store, or `None` when nothing changed.
    ///
    /// ```
    /// use redlimit_core::{Policy, Request, Timestamp, TokenBucket};
    /// let policy = Policy::TokenBucket(TokenBucket::new(2, 1, 1_000).unwrap());
    /// let now = Timestamp::from_millis(1_700_000_000_000);
    /// let first = policy.decide(None, now, Request::new(1)).unwrap();
    /// assert!(first.decision.allowed);
    /// assert_eq!(first.decision.remaining, 1);
    /// let second = policy.decide(first.update.as_ref(), now, Request::new(2)).unwrap();
    /// assert!(!second.decision.allowed);
    /// ```
    ///
    /// # Errors
    /// [`WrongAlgorithm`] when `stored` holds another algorithm.
    pub fn decide(
        &self,
        stored: Option<&Limiter>,
        now: Timestamp,
        request: Request,
    ) -> Result<Outcome<Limiter>, WrongAlgorithm> {
        let wrong = |limiter: &Limiter| WrongAlgorithm {
            stored: limiter.algorithm(),
        };
        match (self, stored) {
            (Self::TokenBucket(policy), None) => Ok(wrap(policy.decide(None, now, request), |s| {
                Limiter::TokenBucket(*policy, s)
            })),
            (Self::TokenBucket(policy), Some(Limiter::TokenBucket(old, state))) => {
                Ok(wrap(policy.decide(Some((old, state)), now, request), |s| {
                    Limiter::TokenBucket(*policy, s)
                }))
            }
            (Self::Throttle(policy), None) => Ok(wrap(policy.decide(None, now, request), |s| {
                Limiter::Throttle(*policy, s)
            })),
            (Self::Throttle(policy), Some(Limiter::Throttle(old, state))) => {
                Ok(wrap(policy.decide(Some((old, state)), now, request), |s| {
                    Limiter::Throttle(*policy, s)
                }))
            }
            (_, Some(other)) => Err(wrong(other)),
        }
    }
}

fn wrap<S>(outcome: Outcome<S>, store: impl FnOnce(S) -> Limiter) -> Outcome<Limiter> {
    Outcome {
        decision: outcome.decision,
        update: outcome.update.map(store),
    }
}

impl Limiter {
    /// The algorithm of this limiter.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        self.policy().algorithm()
    }

    /// The policy of the call that last changed this limiter.
    #[must_use]
    pub const fn policy(&self) -> Policy {
        match self {
            Self::TokenBucket(policy, _) => Policy::TokenBucket(*policy),
            Self::Throttle(policy, _) => Policy::Throttle(*policy),
        }
    }

    /// The moment from which this limiter is equivalent to no key at all.
    #[must_use]
    pub fn idle_at(&self) -> Timestamp {
        match self {
            Self::TokenBucket(policy, state) => policy.idle_at(state),
            Self::Throttle(policy, state) => policy.idle_at(state),
        }
    }

    /// What a request of cost 1 would get at `now`, without changing anything.
    #[must_use]
    pub fn status(&self, now: Timestamp) -> Decision {
        let peek = Request {
            peek: true,
            ..Request::new(1)
        };
        match self {
            Self::TokenBucket(policy, state) => {
                policy.decide(Some((policy, state)), now, peek).decision
            }
            Self::Throttle(policy, state) => {
                policy.decide(Some((policy, state)), now, peek).decision
            }
        }
    }
}
