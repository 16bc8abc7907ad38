//! The tower [`Layer`]: configuration and shared state only (tower-http's `limit/`
//! shape); [`RateLimit`] does the work.

use super::caller::Identify;
use super::config::{Config, ConfigError, Settings, SharedSettings};
use super::metrics::Metrics;
use super::rejection::{self, Limited, RejectionFn};
use super::service::RateLimit;
use crate::{ErrorKind, RateLimiter};
use axum::body::Body;
use http::Response;
use http::request::Parts;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tower_layer::Layer;

/// Computes a request's cost for a rule (by name); `None` keeps the rule's cost.
pub type CostFn = Arc<dyn Fn(&Parts, &str) -> Option<u64> + Send + Sync>;

/// The rate-limiting layer. Its state lives in Redis (through the [`RateLimiter`]);
/// every clone and every service it makes share it.
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) limiter: RateLimiter,
    pub(crate) settings: SharedSettings,
    pub(crate) metrics: Metrics,
    pub(crate) identify: Option<Arc<dyn Identify>>,
    pub(crate) cost: Option<CostFn>,
    pub(crate) rejection: RejectionFn,
    pub(crate) warned_no_peer: AtomicBool,
    /// The kind of the last error that left requests without a decision, while it
    /// lasts: logged when it begins, changes and ends, not per request.
    pub(crate) failing: Mutex<Option<ErrorKind>>,
    /// Whether `failing` may be set (read on every decision without the lock).
    pub(crate) any_failing: AtomicBool,
    /// Whether the limiter turned out to be a Redis Cluster (limits of several callers
    /// are then decided slot by slot).
    pub(crate) cluster: AtomicBool,
    /// The limits attached to routes in code, for the usage route.
    pub(crate) routes: Mutex<Vec<Arc<super::rules::Rule>>>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer").finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A layer deciding with `limiter` under `settings`.
    #[must_use]
    pub fn new(limiter: RateLimiter, settings: Settings) -> Self {
        Self {
            shared: Arc::new(Shared {
                limiter,
                settings: Arc::new(RwLock::new(Arc::new(settings))),
                metrics: Metrics::default(),
                identify: None,
                cost: None,
                rejection: Arc::new(rejection::problem),
                warned_no_peer: AtomicBool::new(false),
                failing: Mutex::new(None),
                any_failing: AtomicBool::new(false),
                cluster: AtomicBool::new(false),
                routes: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A layer from a configuration, checked now.
    ///
    /// # Errors
    /// The first invalid field of `config`, named.
    pub fn from_config(limiter: RateLimiter, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self::new(limiter, config.compile()?))
    }

    fn shared_mut(&mut self) -> &mut Shared {
        // Builder methods run before the layer is cloned; if it was, they copy it.
        if Arc::get_mut(&mut self.shared).is_none() {
            let old = &self.shared;
            let routes = old
                .routes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            self.shared = Arc::new(Shared {
                limiter: old.limiter.clone(),
                settings: Arc::clone(&old.settings),
                metrics: old.metrics.clone(),
                identify: old.identify.clone(),
                cost: old.cost.clone(),
                rejection: Arc::clone(&old.rejection),
                warned_no_peer: AtomicBool::new(false),
                failing: Mutex::new(None),
                any_failing: AtomicBool::new(false),
                cluster: AtomicBool::new(old.cluster.load(Ordering::Relaxed)),
                routes: Mutex::new(routes),
            });
        }
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared,
            None => unreachable!("a fresh Arc is unique"),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Names callers of `key = "custom"` rules.
    #[must_use]
    pub fn identify(mut self, identify: impl Identify) -> Self {
        self.shared_mut().identify = Some(Arc::new(identify));
        self
    }

    /// Computes each request's cost (else each rule's `cost`).
    #[must_use]
    pub fn cost(
        mut self,
        cost: impl Fn(&Parts, &str) -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        self.shared_mut().cost = Some(Arc::new(cost));
        self
    }

    /// Replaces the 429 answer (default: [`rejection::problem`], an RFC 9457 body).
    /// `Retry-After` and the rate-limit headers are added to what it returns.
    #[must_use]
    pub fn rejection(
        mut self,
        rejection: impl Fn(&Limited) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        self.shared_mut().rejection = Arc::new(rejection);
        self
    }

    /// The metrics of this layer (render them on your metrics endpoint).
    #[must_use]
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }

    /// A handle that swaps the settings in force (hot reload).
    #[must_use]
    pub fn reloader(&self) -> super::reload::Reloader {
        super::reload::Reloader::new(Arc::clone(&self.shared.settings))
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.shared), None)
    }
}

impl Shared {
    /// A request was served without a decision because of `error`: logged when such
    /// errors begin or change kind.
    pub(crate) fn failed(&self, rule: &str, error: &crate::Error) {
        let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
        if *failing != Some(error.kind()) {
            *failing = Some(error.kind());
            self.any_failing.store(true, Ordering::Relaxed);
            tracing::warn!(
                rule,
                %error,
                "redlimit: no decision, requests served unlimited until decisions come back \
                 (logged once; the backend_errors metric counts each request)"
            );
        }
    }

    /// A decision was made: the end of any failing spell.
    pub(crate) fn decided(&self) {
        if self.any_failing.load(Ordering::Relaxed) {
            let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(kind) = failing.take() {
                tracing::info!(error = kind.as_str(), "redlimit: decisions are made again");
            }
            self.any_failing.store(false, Ordering::Relaxed);
        }
    }
}
