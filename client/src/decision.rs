//! What the client answers: a decision, where it came from, and a key's status.

use redlimit_core::{Algorithm, Concurrency, Policy, RetryAfter, UsageShape, ceil_millis};
use std::time::Duration;

/// Where a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// The redlimit module on the server decided.
    Server,
    /// No server is configured: decided in this process's memory.
    Memory,
    /// The server was unavailable: decided in memory by the local fallback.
    Fallback,
    /// The server was unavailable: allowed by the fail-open policy.
    FailedOpen,
    /// The server was unavailable: denied by the fail-closed policy.
    FailedClosed,
    /// Denied from the local cache of denied keys, without asking the server.
    LocalCache,
}

impl Source {
    /// A short stable name, used in logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Memory => "memory",
            Self::Fallback => "fallback",
            Self::FailedOpen => "failed_open",
            Self::FailedClosed => "failed_closed",
            Self::LocalCache => "local_cache",
        }
    }
}

/// One decision: may the request proceed, and what is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The request may proceed (and was counted, unless it was a peek).
    pub allowed: bool,
    /// The policy's capacity or limit.
    pub limit: u64,
    /// Whole units still available after this request.
    pub remaining: u64,
    /// How long to wait before acting: zero when allowed now; for a denied request the
    /// earliest moment a retry of the same cost can succeed; for a reservation admitted
    /// by [`RateLimiter::wait`](crate::RateLimiter::wait), the wait it already slept.
    /// `None` when the request can never succeed (its cost exceeds the limit).
    pub retry_after: Option<Duration>,
    /// Time until the limiter is fully available again.
    pub reset_after: Duration,
    /// Who decided.
    pub source: Source,
}

impl Decision {
    /// The decision of the algorithms in `redlimit-core`, from `source`, with its
    /// durations rounded up to whole milliseconds as the server rounds them.
    #[must_use]
    pub fn from_core(decision: redlimit_core::Decision, source: Source) -> Self {
        let millis = |duration| Duration::from_millis(ceil_millis(duration));
        Self {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            retry_after: match decision.retry_after {
                RetryAfter::Now => Some(Duration::ZERO),
                RetryAfter::After(wait) => Some(millis(wait)),
                RetryAfter::Never => None,
            },
            reset_after: millis(decision.reset_after),
            source,
        }
    }
}

/// The answer to an all-or-nothing check over several limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllDecision {
    /// Every limit allowed the request, so it was counted against all of them.
    pub allowed: bool,
    /// One decision per limit, in the order given.
    pub decisions: Vec<Decision>,
    /// Who decided.
    pub source: Source,
}

impl AllDecision {
    /// Wraps the outcome of [`redlimit_core`]'s all-or-nothing decision.
    pub(crate) fn from_core(outcome: redlimit_core::AllOutcome, source: Source) -> Self {
        Self {
            allowed: outcome.allowed,
            decisions: outcome
                .decisions
                .into_iter()
                .map(|decision| Decision::from_core(decision, source))
                .collect(),
            source,
        }
    }

    /// How long until a retry can succeed: the longest wait among the denying limits,
    /// zero when allowed, `None` if one of them can never allow it.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.decisions
            .iter()
            .filter(|decision| !decision.allowed)
            .try_fold(Duration::ZERO, |longest, decision| {
                decision.retry_after.map(|wait| longest.max(wait))
            })
    }
}

/// The policy a key was last changed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredPolicy {
    /// A rate policy.
    Rate(Policy),
    /// A concurrency limit (leases).
    Concurrency(Concurrency),
    /// A usage counter (`RL.USAGE.ADD`): its status always allows, with no limit.
    Usage(UsageShape),
}

impl StoredPolicy {
    /// Its algorithm.
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        match self {
            Self::Rate(policy) => policy.algorithm(),
            Self::Concurrency(_) => Algorithm::Concurrency,
            Self::Usage(_) => Algorithm::Usage,
        }
    }
}

/// A limiter key's policy and what a request of cost 1 would get now (`RL.STATUS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// The policy of the call that last changed the key.
    pub policy: StoredPolicy,
    /// The answer a peek of cost 1 gets now.
    pub decision: Decision,
}
