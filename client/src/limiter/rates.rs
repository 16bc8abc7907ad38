//! Decisions of rate policies: one limit ([`check`](RateLimiter::check),
//! [`peek`](RateLimiter::peek)) or several at once, all or nothing
//! ([`check_all`](RateLimiter::check_all)).

use super::RateLimiter;
use crate::backend::one_slot;
use crate::decision::{AllDecision, Decision, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::{local, observe, protocol};
use redis::Value;
use redlimit_core::{MAX_COUNT, Policy, Request};
use std::time::Instant;

/// `cost`, if no limit refuses it as an argument (at most 2^62).
pub(super) fn check_cost(cost: u64) -> Result<u64> {
    if cost > MAX_COUNT {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("cost must be at most {MAX_COUNT}"),
        ));
    }
    Ok(cost)
}

impl RateLimiter {
    /// Counts one request against `key` under `policy` if the policy allows it.
    ///
    /// # Errors
    /// See [`Error`]; when the server is unavailable, the
    /// [`FailurePolicy`](crate::FailurePolicy) answers instead (and only
    /// [`FailurePolicy::Error`](crate::FailurePolicy::Error) returns an error).
    pub async fn check(&self, key: impl AsRef<[u8]>, policy: &Policy) -> Result<Decision> {
        let span = observe::span("check");
        let decided = observe::within(
            &span,
            self.decide("check", key.as_ref(), policy, Request::new(1)),
        )
        .await;
        observe::record(&span, &decided);
        decided
    }

    /// Counts a request of `cost` units (0: only asks) if the policy allows it.
    ///
    /// # Errors
    /// As [`check`](Self::check); a cost above 2^62.
    pub async fn check_cost(
        &self,
        key: impl AsRef<[u8]>,
        policy: &Policy,
        cost: u64,
    ) -> Result<Decision> {
        let request = Request::new(check_cost(cost)?);
        let span = observe::span("check_cost");
        let decided =
            observe::within(&span, self.decide("check", key.as_ref(), policy, request)).await;
        observe::record(&span, &decided);
        decided
    }

    /// What a request of `cost` would get now, without counting it.
    ///
    /// # Errors
    /// As [`check_cost`](Self::check_cost); a throttle policy cannot peek a cost
    /// above 0 (redis-cell's command has no peek).
    pub async fn peek(
        &self,
        key: impl AsRef<[u8]>,
        policy: &Policy,
        cost: u64,
    ) -> Result<Decision> {
        let request = Request {
            peek: true,
            ..Request::new(check_cost(cost)?)
        };
        let span = observe::span("peek");
        let decided =
            observe::within(&span, self.decide("peek", key.as_ref(), policy, request)).await;
        observe::record(&span, &decided);
        decided
    }

    /// Counts one request of `cost` against every `(key, policy)` if and only if every
    /// one allows it (`RL.ALL`): one round trip, atomic. Policies: token bucket, fixed
    /// and sliding windows. In Redis Cluster the keys must share a hash tag.
    ///
    /// # Errors
    /// As [`check_cost`](Self::check_cost); no limits or more than 32
    /// ([`MAX_ALL_LIMITS`](redlimit_core::MAX_ALL_LIMITS)); a throttle policy; in a
    /// cluster, keys in different slots ([`ErrorKind::CrossSlot`]).
    pub async fn check_all<K: AsRef<[u8]>>(
        &self,
        limits: &[(K, Policy)],
        cost: u64,
    ) -> Result<AllDecision> {
        let request = Request::new(check_cost(cost)?);
        let span = observe::span("check_all");
        let decided = observe::within(&span, self.decide_all("check_all", limits, request)).await;
        observe::record_all(&span, &decided);
        decided
    }

    /// What [`check_all`](Self::check_all) would answer, without counting anything.
    ///
    /// # Errors
    /// As [`check_all`](Self::check_all).
    pub async fn peek_all<K: AsRef<[u8]>>(
        &self,
        limits: &[(K, Policy)],
        cost: u64,
    ) -> Result<AllDecision> {
        let request = Request {
            peek: true,
            ..Request::new(check_cost(cost)?)
        };
        let span = observe::span("peek_all");
        let decided = observe::within(&span, self.decide_all("peek_all", limits, request)).await;
        observe::record_all(&span, &decided);
        decided
    }

    /// One decision of a rate policy, counted in the metrics.
    pub(super) async fn decide(
        &self,
        operation: &'static str,
        key: &[u8],
        policy: &Policy,
        request: Request,
    ) -> Result<Decision> {
        if let Policy::TokenBucket(bucket) = policy {
            bucket.check_max_wait(request.max_wait_ms)?;
        }
        let started = Instant::now();
        let decision = self.decide_once(operation, key, policy, request).await?;
        observe::decision(
            operation,
            decision.allowed,
            decision.source,
            started.elapsed(),
        );
        Ok(decision)
    }

    async fn decide_once(
        &self,
        operation: &'static str,
        key: &[u8],
        policy: &Policy,
        request: Request,
    ) -> Result<Decision> {
        let Some(remote) = self.remote() else {
            let decision = self
                .shared
                .local
                .decide(key, policy, request, local::now())?;
            return Ok(Decision::from_core(decision, Source::Memory));
        };
        let cache = self
            .shared
            .deny_cache
            .as_ref()
            .filter(|_| request.max_wait_ms == 0 && !matches!(policy, Policy::Throttle(_)));
        // The clock only for the cache: it needs the moment the request was sent.
        let sent_at = cache.map(|_| Instant::now());
        if let Some((cache, now)) = cache.zip(sent_at) {
            if let Some(hit) = cache.get(key, policy, request.cost, now) {
                return Ok(hit);
            }
        }
        let cmd = protocol::decide(key, policy, request)?;
        let parse = match policy {
            Policy::Throttle(_) => protocol::parse_throttle,
            _ => protocol::parse_decision,
        };
        match self.call(remote, operation, &cmd, None, parse).await {
            Ok(decision) => {
                if let Some((cache, sent_at)) = cache.zip(sent_at) {
                    cache.remember(key, policy, request.cost, &decision, sent_at);
                }
                Ok(decision)
            }
            Err(error) => self.fail(error, policy.limit(), request.cost, |local| {
                local.decide(key, policy, request, local::now())
            }),
        }
    }

    async fn decide_all<K: AsRef<[u8]>>(
        &self,
        operation: &'static str,
        limits: &[(K, Policy)],
        request: Request,
    ) -> Result<AllDecision> {
        if limits.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "an all-or-nothing check needs at least one limit",
            ));
        }
        if limits.len() as u64 > redlimit_core::MAX_ALL_LIMITS {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "an all-or-nothing check takes at most {} limits",
                    redlimit_core::MAX_ALL_LIMITS
                ),
            ));
        }
        let started = Instant::now();
        let local_all =
            |store: &crate::local::LocalStore| store.decide_all(limits, request, local::now());
        let all = match self.remote() {
            None => {
                protocol::check_all_policies(limits.iter().map(|(_, policy)| policy))?;
                AllDecision::from_core(local_all(&self.shared.local)?, Source::Memory)
            }
            Some(remote) => {
                let cmd = protocol::all(limits, request)?;
                let slot = if self.shared.is_cluster {
                    one_slot(limits.iter().map(|(key, _)| key))?
                } else {
                    None
                };
                let parse = |value: &Value| protocol::parse_all(value, limits.len());
                match self.call(remote, operation, &cmd, slot, parse).await {
                    Ok(all) => all,
                    Err(error) => self.fail_all(
                        error,
                        limits.iter().map(|(_, policy)| (policy, request.cost)),
                        local_all,
                    )?,
                }
            }
        };
        observe::decision(operation, all.allowed, all.source, started.elapsed());
        Ok(all)
    }
}
