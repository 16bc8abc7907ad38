//! [`RateLimiter`]: its settings ([`Builder`]) and the state its clones share. The
//! operations live by concern: rate decisions (`rates`, `wait`), concurrency leases
//! (`leases`), key administration (`keys`); every one of them reaches the server
//! through `server` (timeout, circuit breaker) and answers by `failure` when the
//! server cannot.

mod failure;
mod keys;
mod leases;
mod rates;
mod server;
mod wait;

pub use failure::FailurePolicy;
pub(crate) use wait::longest_max_wait;

use crate::backend::{Backend, Kind, Remote};
use crate::breaker::Breaker;
use crate::deny_cache::DenyCache;
use crate::error::{Error, ErrorKind, Result};
use crate::local::LocalStore;
use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

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
    /// once ([`Source::LocalCache`](crate::Source::LocalCache)). Off by default: a
    /// reset made by another process is not seen until the cached retry time passes.
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
                trouble: AtomicU8::new(server::NO_TROUBLE),
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
    /// The lasting trouble last logged (none, the module missing, unreadable replies:
    /// `server`'s constants): such trouble is logged when it begins and when it ends,
    /// not on every call.
    trouble: AtomicU8,
    pub(crate) is_cluster: bool,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remote")
    }
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

    pub(crate) fn remote(&self) -> Option<&Remote> {
        match &self.shared.backend.kind {
            Kind::Memory => None,
            Kind::Remote(remote) => Some(remote),
        }
    }
}
