//! Every algorithm behind one policy type and one stored-limiter type.

use crate::concurrency::{Concurrency, Leases};
use crate::decision::{Decision, Outcome, Request};
use crate::fixed_window::{FixedWindow, WindowCount};
use crate::sliding_counter::{SlidingCounter, WindowPair};
use crate::sliding_log::{SlidingLog, SlidingWindow};
use crate::throttle::{Throttle, ThrottleState};
use crate::time::Timestamp;
use crate::token_bucket::{BucketState, TokenBucket};
use crate::usage::{UsageBuckets, UsageShape};
use core::borrow::Borrow;
use core::fmt;

/// The algorithms a limiter key can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// [`TokenBucket`].
    TokenBucket,
    /// [`Throttle`] (redis-cell GCRA).
    Throttle,
    /// [`FixedWindow`].
    Fixed,
    /// [`SlidingWindow`] (exact log).
    Sliding,
    /// [`SlidingCounter`] (`APPROX`).
    SlidingApprox,
    /// [`Concurrency`] leases.
    Concurrency,
    /// A [`UsageShape`] counter (reporting, never limiting).
    Usage,
}

impl Algorithm {
    /// The name `RL.STATUS` reports.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::TokenBucket => "tokenbucket",
            Self::Throttle => "throttle",
            Self::Fixed => "fixed",
            Self::Sliding => "sliding",
            Self::SlidingApprox => "sliding-approx",
            Self::Concurrency => "concurrency",
            Self::Usage => "usage",
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
    /// An epoch-aligned fixed window.
    Fixed(FixedWindow),
    /// An exact sliding window.
    Sliding(SlidingWindow),
    /// An approximate sliding window.
    SlidingApprox(SlidingCounter),
}

/// A key's stored limiter: the policy that last changed it and its state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Limiter {
    /// A token bucket and its deficit.
    TokenBucket(TokenBucket, BucketState),
    /// A throttle and its TAT.
    Throttle(Throttle, ThrottleState),
    /// A fixed window and its count.
    Fixed(FixedWindow, WindowCount),
    /// An exact sliding window and its log.
    Sliding(SlidingWindow, Box<SlidingLog>),
    /// An approximate sliding window and its two counts.
    SlidingApprox(SlidingCounter, WindowPair),
    /// A concurrency limit and its leases.
    Concurrency(Concurrency, Box<Leases>),
    /// A usage counter and its buckets.
    Usage(UsageShape, Box<UsageBuckets>),
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

/// Runs one algorithm's `decide` against a stored limiter of the same variant.
macro_rules! decide_as {
    ($variant:ident, $policy:expr, $stored:expr, $now:expr, $request:expr, $wrap:expr) => {
        match $stored {
            None => Ok($policy.decide(None, $now, $request).map($wrap)),
            Some(Limiter::$variant(old, state)) => Ok($policy
                .decide(Some((old, state.borrow())), $now, $request)
                .map($wrap)),
            Some(other) => Err(WrongAlgorithm {
                stored: other.algorithm(),
            }),
        }
    };
}

impl Policy {
    /// The algorithm of this policy.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        match self {
            Self::TokenBucket(_) => Algorithm::TokenBucket,
            Self::Throttle(_) => Algorithm::Throttle,
            Self::Fixed(_) => Algorithm::Fixed,
            Self::Sliding(_) => Algorithm::Sliding,
            Self::SlidingApprox(_) => Algorithm::SlidingApprox,
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
        let stored = Limiter::live(stored, now);
        match *self {
            Self::TokenBucket(p) => decide_as!(TokenBucket, p, stored, now, request, |s| {
                Limiter::TokenBucket(p, s)
            }),
            Self::Throttle(p) => {
                decide_as!(Throttle, p, stored, now, request, |s| Limiter::Throttle(
                    p, s
                ))
            }
            Self::Fixed(p) => decide_as!(Fixed, p, stored, now, request, |s| Limiter::Fixed(p, s)),
            Self::Sliding(p) => decide_as!(Sliding, p, stored, now, request, |s| Limiter::Sliding(
                p,
                Box::new(s)
            )),
            Self::SlidingApprox(p) => decide_as!(SlidingApprox, p, stored, now, request, |s| {
                Limiter::SlidingApprox(p, s)
            }),
        }
    }
}

impl Limiter {
    /// The algorithm of this limiter.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        match self {
            Self::TokenBucket(..) => Algorithm::TokenBucket,
            Self::Throttle(..) => Algorithm::Throttle,
            Self::Fixed(..) => Algorithm::Fixed,
            Self::Sliding(..) => Algorithm::Sliding,
            Self::SlidingApprox(..) => Algorithm::SlidingApprox,
            Self::Concurrency(..) => Algorithm::Concurrency,
            Self::Usage(..) => Algorithm::Usage,
        }
    }

    /// The numbers of the policy of the call that last changed this limiter, named as
    /// the command arguments that set them.
    #[must_use]
    pub fn policy_fields(&self) -> Vec<(&'static str, u64)> {
        match self {
            Self::TokenBucket(p, _) => {
                vec![
                    ("capacity", p.capacity()),
                    ("refill_tokens", p.refill_tokens()),
                    ("refill_ms", p.refill_ms()),
                ]
            }
            Self::Throttle(p, _) => vec![
                ("max_burst", p.max_burst()),
                ("count_per_period", p.count()),
                ("period", p.period_s()),
            ],
            Self::Fixed(p, _) => vec![("limit", p.limit()), ("window_ms", p.window_ms())],
            Self::Sliding(p, _) => vec![("limit", p.limit()), ("window_ms", p.window_ms())],
            Self::SlidingApprox(p, _) => vec![("limit", p.limit()), ("window_ms", p.window_ms())],
            Self::Concurrency(p, _) => vec![("limit", p.limit()), ("lease_ms", p.lease_ms())],
            Self::Usage(p, _) => vec![("bucket_ms", p.bucket_ms()), ("buckets", p.buckets())],
        }
    }

    /// `stored`, unless it is past its idle moment at `now`: from then on a key is
    /// exactly an absent key (whatever its algorithm), whether or not the server has
    /// removed it yet.
    #[must_use]
    pub fn live(stored: Option<&Self>, now: Timestamp) -> Option<&Self> {
        stored.filter(|limiter| limiter.idle_at() > now)
    }

    /// The moment from which this limiter is equivalent to no key at all.
    #[must_use]
    pub fn idle_at(&self) -> Timestamp {
        match self {
            Self::TokenBucket(p, s) => p.idle_at(s),
            Self::Throttle(p, s) => p.idle_at(s),
            Self::Fixed(p, s) => p.idle_at(s),
            Self::Sliding(p, s) => p.idle_at(s),
            Self::SlidingApprox(p, s) => p.idle_at(s),
            Self::Concurrency(p, s) => p.idle_at(s),
            Self::Usage(p, s) => p.idle_at(s),
        }
    }

    /// Bytes this limiter occupies in memory, its heap parts included.
    #[must_use]
    pub fn memory_usage(&self) -> usize {
        let heap = match self {
            Self::Sliding(_, log) => core::mem::size_of::<SlidingLog>() + log.entries_capacity(),
            Self::Concurrency(_, leases) => core::mem::size_of::<Leases>() + leases.heap_size(),
            Self::Usage(_, counted) => core::mem::size_of::<UsageBuckets>() + counted.heap_size(),
            _ => 0,
        };
        core::mem::size_of::<Self>() + heap
    }

    /// What a request of cost 1 would get at `now`, without changing anything.
    #[must_use]
    pub fn status(&self, now: Timestamp) -> Decision {
        let peek = Request {
            peek: true,
            ..Request::new(1)
        };
        match self {
            Self::TokenBucket(p, s) => p.decide(Some((p, s)), now, peek).decision,
            Self::Throttle(p, s) => p.decide(Some((p, s)), now, peek).decision,
            Self::Fixed(p, s) => p.decide(Some((p, s)), now, peek).decision,
            Self::Sliding(p, s) => p.decide(Some((p, s)), now, peek).decision,
            Self::SlidingApprox(p, s) => p.decide(Some((p, s)), now, peek).decision,
            Self::Concurrency(p, s) => p.status(s, now),
            Self::Usage(p, s) => usage_status(p, s, now),
        }
    }
}

/// `RL.STATUS` on a usage counter: recording is never refused and has no limit, so
/// `allowed` is true, `limit` and `remaining` are 0, and `reset_after` is the time until
/// the newest bucket leaves the ring (the key vanishes).
fn usage_status(shape: &UsageShape, counted: &UsageBuckets, now: Timestamp) -> Decision {
    let idle_in = shape.idle_at(counted).micros_since(now);
    Decision {
        allowed: true,
        limit: 0,
        remaining: 0,
        retry_after: crate::decision::RetryAfter::Now,
        reset_after: core::time::Duration::from_micros(idle_in),
    }
}
