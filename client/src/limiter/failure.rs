//! What a decision answers when the server cannot decide: the [`FailurePolicy`], the
//! open and closed answers, and the fallback to this process's memory.

use super::RateLimiter;
use crate::decision::{AllDecision, Decision, Source};
use crate::error::{Error, Result};
use crate::local::LocalStore;
use redlimit_core::Policy;
use std::time::Duration;

/// What a decision answers when the server cannot decide: down, slow, refusing writes,
/// without the redlimit module (`ERR unknown command 'RL.…'`), or answering something
/// this crate cannot read ([`Error::is_backend_failure`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Allow the request ([`Source::FailedOpen`]): availability over protection.
    Open,
    /// Deny the request ([`Source::FailedClosed`]), with a retry after the breaker's
    /// cool-down: protection over availability.
    Closed,
    /// Decide in this process's memory with the same algorithms
    /// ([`Source::Fallback`]): every process enforces the limits on its own traffic
    /// until the server is back. The default.
    #[default]
    Fallback,
    /// Return the error ([`Error::is_backend_failure`]) and let the caller choose.
    Error,
}

impl RateLimiter {
    /// The answer of the open or closed failure policy.
    pub(crate) fn failed(&self, limit: u64, cost: u64) -> Decision {
        let open = self.failure == FailurePolicy::Open;
        Decision {
            allowed: open,
            limit,
            remaining: if open { limit.saturating_sub(cost) } else { 0 },
            retry_after: Some(if open {
                Duration::ZERO
            } else {
                self.shared.cool_down
            }),
            reset_after: Duration::ZERO,
            source: if open {
                Source::FailedOpen
            } else {
                Source::FailedClosed
            },
        }
    }

    /// Answers by the failure policy when `error` says the server could not decide.
    pub(super) fn fail(
        &self,
        error: Error,
        limit: u64,
        cost: u64,
        fallback: impl FnOnce(&LocalStore) -> Result<redlimit_core::Decision>,
    ) -> Result<Decision> {
        if !error.is_backend_failure() {
            return Err(error);
        }
        match self.failure {
            FailurePolicy::Fallback => Ok(Decision::from_core(
                fallback(&self.shared.local)?,
                Source::Fallback,
            )),
            FailurePolicy::Error => Err(error),
            FailurePolicy::Open | FailurePolicy::Closed => Ok(self.failed(limit, cost)),
        }
    }

    /// [`fail`](Self::fail) for an all-or-nothing decision over `policies` (each with
    /// its cost): the fallback decides them all in memory, open and closed answer each
    /// limit alike.
    pub(crate) fn fail_all<'p>(
        &self,
        error: Error,
        policies: impl Iterator<Item = (&'p Policy, u64)>,
        fallback: impl FnOnce(&LocalStore) -> Result<redlimit_core::AllOutcome>,
    ) -> Result<AllDecision> {
        if !error.is_backend_failure() {
            return Err(error);
        }
        match self.failure {
            FailurePolicy::Fallback => Ok(AllDecision::from_core(
                fallback(&self.shared.local)?,
                Source::Fallback,
            )),
            FailurePolicy::Error => Err(error),
            FailurePolicy::Open | FailurePolicy::Closed => {
                let decisions: Vec<Decision> = policies
                    .map(|(policy, cost)| self.failed(policy.limit(), cost))
                    .collect();
                Ok(AllDecision {
                    allowed: self.failure == FailurePolicy::Open,
                    source: decisions.first().map_or(Source::FailedClosed, |d| d.source),
                    decisions,
                })
            }
        }
    }
}
