//! Concurrency limits: leases taken ([`acquire`](RateLimiter::acquire)), renewed and
//! released.

use super::{FailurePolicy, RateLimiter};
use crate::decision::{Decision, Source};
use crate::error::Result;
use crate::{local, observe, protocol};
use redlimit_core::Concurrency;
use std::time::Instant;

impl RateLimiter {
    /// Takes the lease `lease_id` on `key` (at most `policy.limit()` held at once, each
    /// expiring after `policy.lease_ms()` unless renewed); acquiring a held id renews it.
    ///
    /// # Errors
    /// As [`check`](Self::check); a lease id over 256 bytes.
    pub async fn acquire(
        &self,
        key: impl AsRef<[u8]>,
        policy: &Concurrency,
        lease_id: impl AsRef<[u8]>,
    ) -> Result<Decision> {
        let (key, id) = (key.as_ref(), lease_id.as_ref());
        Concurrency::check_lease_id(id)?;
        let span = observe::span("acquire");
        let decided = observe::within(&span, self.lease(key, policy, id)).await;
        observe::record(&span, &decided);
        decided
    }

    async fn lease(&self, key: &[u8], policy: &Concurrency, id: &[u8]) -> Result<Decision> {
        let started = Instant::now();
        let limit = policy.limit();
        let decision = match self.remote() {
            None => Decision::from_core(
                self.shared.local.acquire(key, policy, id, local::now())?,
                Source::Memory,
            ),
            Some(remote) => match self
                .call(
                    remote,
                    "acquire",
                    &protocol::acquire(key, policy, id),
                    None,
                    protocol::parse_decision,
                )
                .await
            {
                Ok(decision) => decision,
                Err(error) => self.fail(error, limit, 1, |local| {
                    local.acquire(key, policy, id, local::now())
                })?,
            },
        };
        observe::decision(
            "acquire",
            decision.allowed,
            decision.source,
            started.elapsed(),
        );
        Ok(decision)
    }

    /// Renews the lease `lease_id` (the same as acquiring it again).
    ///
    /// # Errors
    /// As [`acquire`](Self::acquire).
    pub async fn renew(
        &self,
        key: impl AsRef<[u8]>,
        policy: &Concurrency,
        lease_id: impl AsRef<[u8]>,
    ) -> Result<Decision> {
        self.acquire(key, policy, lease_id).await
    }

    /// Releases the lease `lease_id`; true if it was held.
    ///
    /// # Errors
    /// As [`check`](Self::check), except that when the server is unavailable only the
    /// fallback policy answers (from its own leases); the others return the error.
    pub async fn release(&self, key: impl AsRef<[u8]>, lease_id: impl AsRef<[u8]>) -> Result<bool> {
        let (key, id) = (key.as_ref(), lease_id.as_ref());
        let span = observe::span("release");
        observe::within(&span, self.release_lease(key, id)).await
    }

    async fn release_lease(&self, key: &[u8], id: &[u8]) -> Result<bool> {
        let now = local::now();
        let Some(remote) = self.remote() else {
            return self.shared.local.release(key, id, now);
        };
        // Leases taken by the fallback while the server was down are released too.
        let fallback = self.failure == FailurePolicy::Fallback;
        let released_locally = fallback && self.shared.local.release(key, id, now).unwrap_or(false);
        match self
            .call(
                remote,
                "release",
                &protocol::release(key, id),
                None,
                protocol::boolean,
            )
            .await
        {
            Ok(released) => Ok(released || released_locally),
            Err(error) if fallback && error.is_backend_failure() => Ok(released_locally),
            Err(error) => Err(error),
        }
    }
}
