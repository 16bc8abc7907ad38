//! [`RateLimiter`]: every operation, with the timeout, the circuit breaker, the failure
//! policy and the denied-key cache around the server call.

use crate::backend::{Backend, Kind, Remote, one_slot};
use crate::breaker::{Admit, Breaker};
use crate::decision::{AllDecision, Decision, Source, Status, StoredPolicy};
use crate::deny_cache::DenyCache;
use crate::error::{Error, ErrorKind, Result};
use crate::local::{self, LocalStore};
use crate::verify::{BackendInfo, Engine};
use crate::{observe, protocol};
use redis::{Cmd, Value};
use redlimit_core::{
    Concurrency, Limiter, MAX_COUNT, MAX_DURATION_MS, Policy, Request, TokenBucket,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

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

/// The longest cool-down of the circuit breaker.
const MAX_COOL_DOWN: Duration = Duration::from_secs(365 * 24 * 3_600);

/// Settings of a [`RateLimiter`]; start from [`RateLimiter::builder`].
#[derive(Debug)]
#[must_use]
pub struct Builder {
    backend: Backend,
    timeout: Duration,
    failure: FailurePolicy,
    breaker_threshold: u32,
    cool_down: Duration,
    local_capacity: usize,
    deny_cache: Option<usize>,
}

impl Builder {
    /// How long one decision may wait for the server (connecting included) before the
    /// failure policy answers. Default 50 ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to answer when the server cannot. Default [`FailurePolicy::Fallback`].
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// The circuit breaker: after `failures` consecutive timeouts or connection errors
    /// (default 3), the server is not called for `cool_down` (default 1 s, at most a
    /// year); then one call probes it per cool-down until one succeeds.
    pub fn circuit_breaker(mut self, failures: u32, cool_down: Duration) -> Self {
        self.breaker_threshold = failures;
        // Bounded so that instants computed from it cannot overflow (`Duration::MAX`).
        self.cool_down = cool_down.min(MAX_COOL_DOWN);
        self
    }

    /// Keys the in-memory store (the [`Backend::memory`] backend, or the fallback)
    /// holds at most; idle keys go first. Default 100 000.
    pub fn local_capacity(mut self, keys: usize) -> Self {
        self.local_capacity = keys;
        self
    }

    /// Answers denied keys locally until their retry time, for at most `keys` keys at
    /// once ([`Source::LocalCache`]). Off by default: a reset made by another process
    /// is not seen until the cached retry time passes.
    pub fn deny_cache(mut self, keys: usize) -> Self {
        self.deny_cache = Some(keys);
        self
    }

    /// The limiter.
    ///
    /// # Errors
    /// A zero timeout.
    pub fn build(self) -> Result<RateLimiter> {
        if self.timeout.is_zero() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "timeout must be positive",
            ));
        }
        Ok(self.into_limiter())
    }

    fn into_limiter(self) -> RateLimiter {
        RateLimiter {
            failure: self.failure,
            shared: Arc::new(Shared {
                timeout: self.timeout,
                breaker: Breaker::new(self.breaker_threshold, self.cool_down),
                cool_down: self.cool_down,
                local: LocalStore::new(self.local_capacity),
                deny_cache: self.deny_cache.map(DenyCache::new),
                trouble: AtomicU8::new(NO_TROUBLE),
                is_cluster: self.backend.is_cluster(),
                backend: self.backend,
            }),
        }
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.kind {
            Kind::Memory => "Backend::Memory",
            Kind::Remote(_) => "Backend::Remote",
        })
    }
}

/// Rate limits and concurrency limits, decided by the redlimit module on a Redis
/// server (or in memory). Cheap to clone: clones share connections and state.
///
/// See the [crate documentation](crate) for an example.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    pub(crate) shared: Arc<Shared>,
    pub(crate) failure: FailurePolicy,
}

#[derive(Debug)]
pub(crate) struct Shared {
    backend: Backend,
    timeout: Duration,
    breaker: Breaker,
    cool_down: Duration,
    pub(crate) local: LocalStore,
    deny_cache: Option<DenyCache>,
    /// The lasting trouble last logged ([`NO_TROUBLE`], [`MODULE_MISSING`],
    /// [`UNREADABLE`]): such trouble is logged when it begins and when it ends, not on
    /// every call.
    trouble: AtomicU8,
    pub(crate) is_cluster: bool,
}

const NO_TROUBLE: u8 = 0;
const MODULE_MISSING: u8 = 1;
const UNREADABLE: u8 = 2;

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remote")
    }
}

fn check_cost(cost: u64) -> Result<u64> {
    if cost > MAX_COUNT {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("cost must be at most {MAX_COUNT}"),
        ));
    }
    Ok(cost)
}

impl RateLimiter {
    /// Settings for a limiter on `backend`.
    pub fn builder(backend: Backend) -> Builder {
        Builder {
            backend,
            timeout: Duration::from_millis(50),
            failure: FailurePolicy::default(),
            breaker_threshold: 3,
            cool_down: Duration::from_secs(1),
            local_capacity: 100_000,
            deny_cache: None,
        }
    }

    /// The same limiter (same connection, breaker and fallback store) answering by
    /// `policy` when the server is unavailable: for rules that need another policy.
    #[must_use]
    pub fn with_failure_policy(&self, policy: FailurePolicy) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            failure: policy,
        }
    }

    /// The policy answering when the server is unavailable.
    #[must_use]
    pub fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }

    /// A limiter deciding in this process's memory (no server).
    #[must_use]
    pub fn memory() -> Self {
        Self::builder(Backend::memory()).into_limiter()
    }

    /// Counts one request against `key` under `policy` if the policy allows it.
    ///
    /// # Errors
    /// See [`Error`]; when the server is unavailable, the [`FailurePolicy`] answers
    /// instead (and only [`FailurePolicy::Error`] returns an error).
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "check")
        )
    )]
    pub async fn check(&self, key: impl AsRef<[u8]>, policy: &Policy) -> Result<Decision> {
        self.decide("check", key.as_ref(), policy, Request::new(1))
            .await
    }

    /// Counts a request of `cost` units (0: only asks) if the policy allows it.
    ///
    /// # Errors
    /// As [`check`](Self::check); a cost above 2^62.
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "check_cost")
        )
    )]
    pub async fn check_cost(
        &self,
        key: impl AsRef<[u8]>,
        policy: &Policy,
        cost: u64,
    ) -> Result<Decision> {
        let request = Request::new(check_cost(cost)?);
        self.decide("check", key.as_ref(), policy, request).await
    }

    /// What a request of `cost` would get now, without counting it.
    ///
    /// # Errors
    /// As [`check_cost`](Self::check_cost); a throttle policy cannot peek a cost
    /// above 0 (redis-cell's command has no peek).
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "peek")
        )
    )]
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
        self.decide("peek", key.as_ref(), policy, request).await
    }

    /// Waits until a request of `cost` is allowed, at most `max_wait`, then returns
    /// the allowed decision; returns a denied decision at once when it cannot be
    /// allowed within `max_wait`.
    ///
    /// For a token bucket this is one call: the server reserves the tokens
    /// (`MAXWAIT`), so waiters are served in arrival order, and the future sleeps the
    /// reservation's wait. Dropping the future while it sleeps forfeits the reserved
    /// tokens (they stay spent) and leaves nothing else behind. For other policies it
    /// retries at each retry time until allowed or out of time.
    ///
    /// As the module's `MAXWAIT` defines it, a token bucket admits a reservation whose
    /// cost exceeds the capacity when the refill within `max_wait` covers it. A denied
    /// reservation's `retry_after` is the time until a call with the same `max_wait`
    /// could be admitted: the whole wait would be `retry_after + max_wait`.
    ///
    /// # Errors
    /// As [`check_cost`](Self::check_cost).
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "wait")
        )
    )]
    pub async fn wait(
        &self,
        key: impl AsRef<[u8]>,
        policy: &Policy,
        cost: u64,
        max_wait: Duration,
    ) -> Result<Decision> {
        let (key, cost) = (key.as_ref(), check_cost(cost)?);
        // None: a wait too long to be a moment (`Duration::MAX`), so no deadline.
        let deadline = Instant::now().checked_add(max_wait);
        if let Policy::TokenBucket(bucket) = policy {
            let max_wait_ms = longest_max_wait(
                bucket,
                u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX),
            );
            let request = Request {
                max_wait_ms,
                ..Request::new(cost)
            };
            let decision = self.decide("wait", key, policy, request).await?;
            // (A zero wait must not sleep: a timer costs a tick, about a millisecond.)
            if let (true, Some(wait)) = (decision.allowed, decision.retry_after) {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            return Ok(decision);
        }
        loop {
            let decision = self.decide("wait", key, policy, Request::new(cost)).await?;
            let retry_at = decision.retry_after.map(|wait| Instant::now() + wait);
            match retry_at {
                _ if decision.allowed => return Ok(decision),
                Some(at) if deadline.is_none_or(|deadline| at <= deadline) => {
                    tokio::time::sleep_until(
                        at.max(Instant::now() + Duration::from_millis(1)).into(),
                    )
                    .await;
                }
                _ => return Ok(decision),
            }
        }
    }

    /// Counts one request of `cost` against every `(key, policy)` if and only if every
    /// one allows it (`RL.ALL`): one round trip, atomic. Policies: token bucket, fixed
    /// and sliding windows. In Redis Cluster the keys must share a hash tag.
    ///
    /// # Errors
    /// As [`check_cost`](Self::check_cost); no limits or more than 32
    /// ([`MAX_ALL_LIMITS`](redlimit_core::MAX_ALL_LIMITS)); a throttle policy; in a
    /// cluster, keys in different slots ([`ErrorKind::CrossSlot`]).
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "check_all")
        )
    )]
    pub async fn check_all<K: AsRef<[u8]>>(
        &self,
        limits: &[(K, Policy)],
        cost: u64,
    ) -> Result<AllDecision> {
        self.decide_all("check_all", limits, Request::new(check_cost(cost)?))
            .await
    }

    /// What [`check_all`](Self::check_all) would answer, without counting anything.
    ///
    /// # Errors
    /// As [`check_all`](Self::check_all).
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "peek_all")
        )
    )]
    pub async fn peek_all<K: AsRef<[u8]>>(
        &self,
        limits: &[(K, Policy)],
        cost: u64,
    ) -> Result<AllDecision> {
        let request = Request {
            peek: true,
            ..Request::new(check_cost(cost)?)
        };
        self.decide_all("peek_all", limits, request).await
    }

    /// Takes the lease `lease_id` on `key` (at most `policy.limit()` held at once, each
    /// expiring after `policy.lease_ms()` unless renewed); acquiring a held id renews it.
    ///
    /// # Errors
    /// As [`check`](Self::check); a lease id over 256 bytes.
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "acquire")
        )
    )]
    pub async fn acquire(
        &self,
        key: impl AsRef<[u8]>,
        policy: &Concurrency,
        lease_id: impl AsRef<[u8]>,
    ) -> Result<Decision> {
        let (key, id) = (key.as_ref(), lease_id.as_ref());
        Concurrency::check_lease_id(id)?;
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
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "release")
        )
    )]
    pub async fn release(&self, key: impl AsRef<[u8]>, lease_id: impl AsRef<[u8]>) -> Result<bool> {
        let (key, id) = (key.as_ref(), lease_id.as_ref());
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

    /// Deletes limiter keys (`RL.RESET`); the number deleted. In a cluster, keys are
    /// deleted slot by slot.
    ///
    /// # Errors
    /// A key holding another type (nothing deleted in its slot), or the server
    /// unavailable (no failure policy applies).
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "reset")
        )
    )]
    pub async fn reset<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64> {
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
    #[cfg_attr(
        feature = "tracing",
        tracing::instrument(
            name = "redlimit",
            level = "debug",
            skip_all,
            fields(operation = "status")
        )
    )]
    pub async fn status(&self, key: impl AsRef<[u8]>) -> Result<Option<Status>> {
        let key = key.as_ref();
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

    pub(crate) fn remote(&self) -> Option<&Remote> {
        match &self.shared.backend.kind {
            Kind::Memory => None,
            Kind::Remote(remote) => Some(remote),
        }
    }

    /// One decision of a rate policy.
    async fn decide(
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
        if let Some(hit) = cache.and_then(|c| c.get(key, policy, request.cost, Instant::now())) {
            return Ok(hit);
        }
        let cmd = protocol::decide(key, policy, request)?;
        let sent_at = Instant::now();
        let parse = match policy {
            Policy::Throttle(_) => protocol::parse_throttle,
            _ => protocol::parse_decision,
        };
        match self.call(remote, operation, &cmd, None, parse).await {
            Ok(decision) => {
                if let Some(cache) = cache {
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
        let cmd = protocol::all(limits, request)?;
        let started = Instant::now();
        let local_all = |source: Source| -> Result<AllDecision> {
            let outcome = self
                .shared
                .local
                .decide_all(limits, request, local::now())?;
            Ok(AllDecision::from_core(outcome, source))
        };
        let all = match self.remote() {
            None => local_all(Source::Memory)?,
            Some(remote) => {
                let slot = if self.shared.is_cluster {
                    one_slot(limits.iter().map(|(key, _)| key))?
                } else {
                    None
                };
                let parse = |value: &Value| protocol::parse_all(value, limits.len());
                match self.call(remote, operation, &cmd, slot, parse).await {
                    Ok(all) => all,
                    Err(error) if error.is_backend_failure() => match self.failure {
                        FailurePolicy::Fallback => local_all(Source::Fallback)?,
                        FailurePolicy::Error => return Err(error),
                        FailurePolicy::Open | FailurePolicy::Closed => {
                            let decisions: Vec<Decision> = limits
                                .iter()
                                .map(|(_, policy)| self.failed(policy.limit(), request.cost))
                                .collect();
                            AllDecision {
                                allowed: self.failure == FailurePolicy::Open,
                                source: decisions
                                    .first()
                                    .map_or(Source::FailedClosed, |d| d.source),
                                decisions,
                            }
                        }
                    },
                    Err(error) => return Err(error),
                }
            }
        };
        observe::decision(operation, all.allowed, all.source, started.elapsed());
        Ok(all)
    }

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
    fn fail(
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

    /// Sends `cmd` under the timeout and the circuit breaker, and reads the reply with
    /// `parse`: a reply it cannot read is a failure of the server like a timeout (the
    /// failure policy answers, the breaker counts it), never a decision.
    pub(crate) async fn call<T>(
        &self,
        remote: &Remote,
        operation: &'static str,
        cmd: &Cmd,
        slot: Option<u16>,
        parse: impl FnOnce(&Value) -> Result<T>,
    ) -> Result<T> {
        let shared = &self.shared;
        if let Admit::Skip(until) = shared.breaker.admit(Instant::now()) {
            let left = until.saturating_duration_since(Instant::now());
            return Err(Error::new(
                ErrorKind::CircuitOpen,
                format!(
                    "the server failed repeatedly; next attempt in {} ms",
                    left.as_millis()
                ),
            ));
        }
        let result = tokio::time::timeout(shared.timeout, remote.query(cmd, slot, shared.timeout))
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer within {} ms", shared.timeout.as_millis()),
                ))
            })
            .and_then(|value| parse(&value))
            .map_err(|error| match error.kind() {
                ErrorKind::ModuleNotLoaded => error.on_node(&remote.node_name()),
                _ => error,
            });
        match &result {
            Err(error) if error.is_backend_failure() && !error.is_redirect() => {
                if error.breaks_connection() {
                    remote.disconnect();
                }
                self.backend_error(operation, error);
                if let Some(change) = shared.breaker.failure(Instant::now()) {
                    observe::breaker(change, shared.cool_down);
                }
            }
            // The server answered (perhaps with an error reply): it is up.
            _ => {
                if shared.trouble.load(Ordering::Relaxed) != NO_TROUBLE {
                    let ended = shared.trouble.swap(NO_TROUBLE, Ordering::Relaxed);
                    if ended != NO_TROUBLE {
                        observe::trouble_ended(ended == MODULE_MISSING);
                    }
                }
                if let Some(change) = shared.breaker.success() {
                    observe::breaker(change, shared.cool_down);
                }
            }
        }
        result
    }

    /// Counts a failed call, and logs it: every time for a passing failure (a timeout, a
    /// refused connection: the breaker soon stops the calls), once for lasting trouble
    /// (the module missing, unreadable replies) until a call succeeds again.
    fn backend_error(&self, operation: &'static str, error: &Error) {
        let trouble = match error.kind() {
            ErrorKind::ModuleNotLoaded => MODULE_MISSING,
            ErrorKind::Protocol => UNREADABLE,
            _ => NO_TROUBLE,
        };
        let began = trouble != NO_TROUBLE
            && self.shared.trouble.swap(trouble, Ordering::Relaxed) != trouble;
        observe::backend_error(operation, error, trouble == NO_TROUBLE || began);
    }

    /// Checks, now, that the limits can be decided: that every server this limiter
    /// decides on has the redlimit module loaded (the server; the primary Sentinel
    /// names; every primary of a cluster), or, with the script engine
    /// ([`ServerEngine`](crate::ServerEngine)), that the script loads there; the answer
    /// says which engine decides. Call it at startup: a server without the
    /// module answers `ERR unknown command 'RL.…'` to every decision, which the
    /// [`FailurePolicy`] then answers (closed: every request denied; open: every request
    /// allowed) until the module is loaded.
    ///
    /// Replicas are not reached (the client never connects to them): load the module
    /// on them too, or a failover promotes a server where the failure policy answers
    /// every decision (logged once, as an error, when it begins).
    ///
    /// Waits for each answer at most the [timeout](Builder::timeout) or 2 s, whichever
    /// is longer; the circuit breaker is neither consulted nor changed.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redlimit::Error> {
    /// use redlimit::{Backend, RateLimiter};
    /// let limiter = RateLimiter::builder(Backend::redis("redis://127.0.0.1:6379")?).build()?;
    /// let info = limiter.verify().await?; // "the redlimit module is not loaded on ..."
    /// println!("redlimit module {:?} on {:?}", info.module_version(), info.nodes);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::ModuleNotLoaded`] naming every server without the module; the
    /// server unreachable ([`Error::is_unavailable`]); an answer this crate cannot read.
    pub async fn verify(&self) -> Result<BackendInfo> {
        let Some(remote) = self.remote() else {
            return Ok(BackendInfo {
                engine: Engine::Memory,
                nodes: Vec::new(),
            });
        };
        let timeout = self.shared.timeout.max(Duration::from_secs(2));
        let (engine, nodes) = crate::engine::verify(remote, timeout)
            .await
            .map_err(|error| {
                if error.is_module_not_loaded() {
                    error
                } else {
                    let node = remote.node_name();
                    error.context(&format!("checking the redlimit module on {node}"))
                }
            })?;
        Ok(BackendInfo { engine, nodes })
    }
}

/// `max_wait_ms`, or the longest `MAXWAIT` the bucket takes when it is longer. The
/// server bounds `MAXWAIT` so that what refills meanwhile fits 64 bits (at least a full
/// bucket; centuries for common rates): a longer wait, such as `Duration::MAX`, waits
/// for tokens that come within that bound and is denied otherwise, instead of failing.
pub(crate) fn longest_max_wait(bucket: &TokenBucket, max_wait_ms: u64) -> u64 {
    let max_wait_ms = max_wait_ms.min(MAX_DURATION_MS);
    if bucket.check_max_wait(max_wait_ms).is_ok() {
        return max_wait_ms;
    }
    // The bound is monotonic: search it (at most 44 steps, only for such long waits).
    let (mut fits, mut too_long) = (0, max_wait_ms);
    while too_long - fits > 1 {
        let middle = fits + (too_long - fits) / 2;
        if bucket.check_max_wait(middle).is_ok() {
            fits = middle;
        } else {
            too_long = middle;
        }
    }
    fits
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

impl RateLimiter {
    /// Whether the circuit breaker is open now (the server left alone for a cool-down);
    /// read by [`health`](Self::health).
    pub(crate) fn breaker_open(&self) -> bool {
        self.shared.breaker.is_open(Instant::now())
    }
}
