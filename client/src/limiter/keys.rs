//! Operations on limiter keys themselves: [`reset`](RateLimiter::reset) deletes them,
//! [`status`](RateLimiter::status) reads one.

use super::RateLimiter;
use crate::decision::{Decision, Source, Status, StoredPolicy};
use crate::error::Result;
use crate::{local, observe, protocol};
use redlimit_core::{Limiter, Policy};

impl RateLimiter {
    /// Deletes limiter keys (`RL.RESET`); the number deleted. In a cluster, keys are
    /// deleted slot by slot.
    ///
    /// # Errors
    /// A key holding another type (nothing deleted in its slot), or the server
    /// unavailable (no failure policy applies).
    pub async fn reset<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64> {
        let span = observe::span("reset");
        observe::within(&span, self.delete(keys)).await
    }

    async fn delete<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64> {
        for key in keys {
            if let Some(cache) = &self.shared.deny_cache {
                cache.forget(key.as_ref());
            }
        }
        let deleted_locally = self.shared.local.reset(keys, local::now());
        let Some(remote) = self.remote() else {
            return Ok(deleted_locally);
        };
        if keys.is_empty() {
            return Ok(0);
        }
        let mut groups: Vec<(Option<u16>, Vec<&[u8]>)> = Vec::new();
        for key in keys {
            let slot = self
                .shared
                .is_cluster
                .then(|| crate::slot::of(key.as_ref()));
            match groups.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, group)) => group.push(key.as_ref()),
                None => groups.push((slot, vec![key.as_ref()])),
            }
        }
        let mut deleted = 0;
        for (slot, group) in groups {
            deleted += self
                .call(
                    remote,
                    "reset",
                    &protocol::reset(&group),
                    slot,
                    protocol::count,
                )
                .await?;
        }
        Ok(deleted)
    }

    /// The policy `key` was last changed with and what a request of cost 1 would get
    /// now (`RL.STATUS`); `None` for a missing or idle key.
    ///
    /// # Errors
    /// A key holding another type, or the server unavailable.
    pub async fn status(&self, key: impl AsRef<[u8]>) -> Result<Option<Status>> {
        let key = key.as_ref();
        let span = observe::span("status");
        observe::within(&span, self.read_status(key)).await
    }

    async fn read_status(&self, key: &[u8]) -> Result<Option<Status>> {
        let Some(remote) = self.remote() else {
            let now = local::now();
            return Ok(self.shared.local.get(key, now).map(|limiter| Status {
                decision: Decision::from_core(limiter.status(now), Source::Memory),
                policy: stored_policy(&limiter),
            }));
        };
        self.call(
            remote,
            "status",
            &protocol::status(key),
            None,
            protocol::parse_status,
        )
        .await
    }
}

/// The policy a stored limiter was last changed with.
fn stored_policy(limiter: &Limiter) -> StoredPolicy {
    match limiter {
        Limiter::TokenBucket(p, _) => StoredPolicy::Rate(Policy::TokenBucket(*p)),
        Limiter::Throttle(p, _) => StoredPolicy::Rate(Policy::Throttle(*p)),
        Limiter::Fixed(p, _) => StoredPolicy::Rate(Policy::Fixed(*p)),
        Limiter::Sliding(p, _) => StoredPolicy::Rate(Policy::Sliding(*p)),
        Limiter::SlidingApprox(p, _) => StoredPolicy::Rate(Policy::SlidingApprox(*p)),
        Limiter::Concurrency(p, _) => StoredPolicy::Concurrency(*p),
        Limiter::Usage(p, _) => StoredPolicy::Usage(*p),
    }
}
