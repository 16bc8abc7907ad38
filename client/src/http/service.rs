//! The tower [`Layer`], its [`Service`] and their named response future.

use super::caller::{Caller, Identify, Identity, digest};
use super::config::{Config, ConfigError, Settings};
use super::headers::{self, HeaderStyle};
use super::metrics::{Metrics, Outcome};
use super::rejection::{self, Limited, RejectionFn};
use super::rules::{KeyKind, NamedLimit, Rule, redis_key};
use crate::{Decision, ErrorKind, Policy, RateLimiter, Source};
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::request::Parts;
use http::{HeaderMap, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_layer::Layer;
use tower_service::Service;

/// Computes a request's cost for a rule (by name); `None` keeps the rule's cost.
pub type CostFn = Arc<dyn Fn(&Parts, &str) -> Option<u64> + Send + Sync>;

/// The settings in force, swapped whole by a reload.
pub(crate) type SharedSettings = Arc<RwLock<Arc<Settings>>>;

/// The rate-limiting layer. Its state lives in Redis (through the [`RateLimiter`]);
/// every clone and every service it makes share it.
#[derive(Clone)]
pub struct RateLimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    limiter: RateLimiter,
    settings: SharedSettings,
    metrics: Metrics,
    identify: Option<Arc<dyn Identify>>,
    cost: Option<CostFn>,
    rejection: RejectionFn,
    warned_no_peer: AtomicBool,
    /// The kind of the last error that left requests without a decision, while it
    /// lasts: logged when it begins, changes and ends, not per request.
    failing: Mutex<Option<ErrorKind>>,
    /// Whether `failing` may be set (read on every decision without the lock).
    any_failing: AtomicBool,
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
            });
        }
        match Arc::get_mut(&mut self.shared) {
            Some(shared) => shared,
            None => unreachable!("a fresh Arc is unique"),
        }
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
        RateLimit {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The rate-limiting service around `S`. Always ready when `S` is; over-limit requests
/// get a response (429), never an error.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

/// What the decision says to do with the request.
enum Verdict {
    /// Serve it, adding these headers to the response.
    Serve(Option<HeaderMap>),
    /// Answer this instead.
    Answer(Response<Body>),
}

type Deciding = Pin<Box<dyn Future<Output = Verdict> + Send>>;

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Keep the service that was polled ready; leave a clone for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let settings = Arc::clone(
            &self
                .shared
                .settings
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let (parts, body) = request.into_parts();
        match plan(&self.shared, &settings, &parts) {
            Plan::Pass => {
                let future = inner.call(Request::from_parts(parts, body));
                ResponseFuture::calling(future, None)
            }
            Plan::Answer(response) => ResponseFuture::answered(response),
            Plan::Decide(decide) => {
                let deciding = Box::pin(decide.run(Arc::clone(&self.shared), settings));
                ResponseFuture {
                    state: State::Deciding {
                        deciding,
                        service: Some(inner),
                        request: Some(Request::from_parts(parts, body)),
                    },
                }
            }
        }
    }
}

enum Plan {
    Pass,
    Answer(Response<Body>),
    Decide(Decide),
}

/// Everything a decision needs, owned so that its future is `'static`.
struct Decide {
    rule: usize,
    tier: Option<usize>,
    keys: Vec<String>,
    cost: u64,
}

/// The peer address the server recorded (axum's `ConnectInfo`, or a bare `SocketAddr`).
fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .or_else(|| parts.extensions.get::<SocketAddr>().map(SocketAddr::ip))
}

/// Decides synchronously what a request needs.
fn plan(shared: &Shared, settings: &Settings, parts: &Parts) -> Plan {
    // Inside `Router::nest` the URI is stripped of the prefix; rules name full paths.
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| parts.uri.path(), |original| original.0.path());
    if settings.exempt.path(path) {
        return Plan::Pass;
    }
    let Some((index, rule)) = settings.rules.find_indexed(&parts.method, path) else {
        return Plan::Pass;
    };
    let Some(peer) = peer(parts) else {
        if !shared.warned_no_peer.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "redlimit: requests carry no peer address: serve the app with \
                 `into_make_service_with_connect_info::<SocketAddr>()`; answering 500"
            );
        }
        return Plan::Answer(misconfigured());
    };
    let caller = settings.resolver.resolve(parts, Some(peer));
    if settings.exempt.caller(&caller) {
        return Plan::Pass;
    }
    let identity = identity(shared, settings, rule, parts, &caller, peer);
    let tier = rule.tier_index(identity.tier.as_deref());
    let limits = rule.limits_at(tier);
    if limits.is_empty() {
        return Plan::Pass;
    }
    // No limit counts beyond 2^62: a larger cost (perhaps read from the request) can
    // never be allowed, and the server refuses it as such; sent as is, the client
    // would reject the argument and the request would be served unlimited.
    let cost = shared
        .cost
        .as_ref()
        .and_then(|cost| cost(parts, &rule.name))
        .unwrap_or(rule.cost)
        .min(redlimit_core::MAX_COUNT);
    let keys = limits
        .iter()
        .map(|limit| redis_key(&settings.prefix, &rule.name, &identity, &limit.name))
        .collect();
    Plan::Decide(Decide {
        rule: index,
        tier,
        keys,
        cost,
    })
}

/// The key and tier a request counts under, by the rule's key kind; the client IP when
/// the kind's own source is missing (no API key, no valid token, no custom answer).
fn identity(
    shared: &Shared,
    settings: &Settings,
    rule: &Rule,
    parts: &Parts,
    caller: &Caller,
    peer: IpAddr,
) -> Identity {
    let by_ip = || Identity {
        key: settings.resolver.ip_key(caller.ip.unwrap_or(peer)),
        tier: caller.tier.clone(),
    };
    match rule.key {
        KeyKind::Ip => by_ip(),
        KeyKind::ApiKey => caller.api_key.as_ref().map_or_else(by_ip, |key| Identity {
            key: digest("key", key),
            tier: caller.tier.clone(),
        }),
        KeyKind::User => caller.user.as_ref().map_or_else(by_ip, |user| Identity {
            key: digest("user", user),
            tier: caller.tier.clone(),
        }),
        KeyKind::Custom => shared
            .identify
            .as_ref()
            .and_then(|identify| identify.identify(parts, caller))
            .map_or_else(by_ip, |identity| Identity {
                key: digest("custom", &identity.key),
                tier: identity.tier,
            }),
    }
}

impl Shared {
    /// A request was served without a decision because of `error`: logged when such
    /// errors begin or change kind.
    fn failed(&self, rule: &str, error: &crate::Error) {
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
    fn decided(&self) {
        if self.any_failing.load(Ordering::Relaxed) {
            let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(kind) = failing.take() {
                tracing::info!(error = kind.as_str(), "redlimit: decisions are made again");
            }
            self.any_failing.store(false, Ordering::Relaxed);
        }
    }
}

fn misconfigured() -> Response<Body> {
    let mut response = Response::new(Body::from(
        "rate limiting is misconfigured: the server records no peer addresses",
    ));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

impl Decide {
    async fn run(self, shared: Arc<Shared>, settings: Arc<Settings>) -> Verdict {
        let Some(rule) = settings.rules.get(self.rule) else {
            return Verdict::Serve(None);
        };
        let limits = rule.limits_at(self.tier);
        let limiter = match rule.failure {
            Some(policy) => shared.limiter.with_failure_policy(policy),
            None => shared.limiter.clone(),
        };
        let started = Instant::now();
        let decisions = match decide_afresh(&limiter, &self.keys, limits, self.cost).await {
            Ok(decisions) => decisions,
            Err(error) => {
                // Never turn our trouble into the caller's error: serve, and say so
                // (once while the same error lasts: the metrics count every request).
                shared.metrics.backend_error(&rule.name);
                shared.failed(&rule.name, &error);
                return Verdict::Serve(None);
            }
        };
        shared.decided();
        let latency = started.elapsed();
        let allowed = decisions.iter().all(|d| d.allowed);
        let shadow = settings.shadow || rule.shadow;
        let backend_error = decisions.iter().any(|d| {
            matches!(
                d.source,
                Source::Fallback | Source::FailedOpen | Source::FailedClosed
            )
        });
        let outcome = match (allowed, shadow) {
            (true, _) => Outcome::Allowed,
            (false, false) => Outcome::Denied,
            (false, true) => Outcome::ShadowDenied,
        };
        shared
            .metrics
            .decision(&rule.name, outcome, backend_error, latency);
        if shadow {
            if !allowed {
                tracing::info!(rule = %rule.name, shadow = true, "redlimit: over the limit (shadow mode: served)");
            }
            return Verdict::Serve(None);
        }
        // Fail-open and fail-closed answers know no real numbers: no rate-limit headers
        // (a fail-closed 429 still says when to retry).
        let guessed = decisions
            .iter()
            .any(|d| matches!(d.source, Source::FailedOpen | Source::FailedClosed));
        let mut headers = HeaderMap::new();
        if settings.headers != HeaderStyle::None && !guessed {
            headers::write(&mut headers, settings.headers, limits, &decisions);
        }
        if allowed {
            return Verdict::Serve(Some(headers));
        }
        let limited = limited(rule, limits, &decisions);
        let retry_after_ms = limited
            .retry_after
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if limited.unavailable {
            tracing::debug!(rule = %rule.name, retry_after_ms, "redlimit: request refused: the limits cannot be checked (fail closed)");
        } else {
            tracing::info!(
                rule = %rule.name,
                violated = ?limited.violated_policies,
                retry_after_ms,
                "redlimit: request refused (429)"
            );
        }
        let mut response = (shared.rejection)(&limited);
        response.headers_mut().extend(headers);
        rejection::retry_after(&mut response, &limited);
        Verdict::Answer(response)
    }
}

/// [`decide`], and once more after deleting the caller's limiters of this rule if one
/// of them was stored by another algorithm: a limit whose algorithm changed under the
/// same name (a reload or a restart with a new configuration) starts afresh, as a
/// renamed one does, instead of failing (and serving unlimited) until the old key
/// expires. `RL.RESET` deletes only limiters: a key of another Redis type stays, and
/// so does the error.
async fn decide_afresh(
    limiter: &RateLimiter,
    keys: &[String],
    limits: &[NamedLimit],
    cost: u64,
) -> crate::Result<Vec<Decision>> {
    match decide(limiter, keys, limits, cost).await {
        Err(error) if error.is_wrong_type() => {
            if limiter.reset(keys).await.is_err() {
                return Err(error);
            }
            tracing::info!(
                "redlimit: a limit's algorithm changed: the caller's counters of its rule start afresh"
            );
            decide(limiter, keys, limits, cost).await
        }
        result => result,
    }
}

async fn decide(
    limiter: &RateLimiter,
    keys: &[String],
    limits: &[NamedLimit],
    cost: u64,
) -> crate::Result<Vec<Decision>> {
    match (keys, limits) {
        ([key], [limit]) => Ok(vec![limiter.check_cost(key, &limit.policy, cost).await?]),
        _ => {
            let pairs: Vec<(&str, Policy)> = keys
                .iter()
                .zip(limits)
                .map(|(key, limit)| (key.as_str(), limit.policy))
                .collect();
            let all = limiter.check_all(&pairs, cost).await?;
            let mut decisions = all.decisions;
            if !all.allowed {
                // Each decision is "as if decided alone": a limit that would allow
                // reports what it would have left after counting this request, but
                // nothing was counted anywhere. Report what it has.
                for decision in decisions.iter_mut().filter(|d| d.allowed) {
                    decision.remaining =
                        decision.remaining.saturating_add(cost).min(decision.limit);
                }
            }
            Ok(decisions)
        }
    }
}

fn limited(rule: &Rule, limits: &[NamedLimit], decisions: &[Decision]) -> Limited {
    let denied: Vec<(&NamedLimit, &Decision)> = limits
        .iter()
        .zip(decisions)
        .filter(|(_, d)| !d.allowed)
        .collect();
    let retry_after = denied.iter().try_fold(Duration::ZERO, |longest, (_, d)| {
        d.retry_after.map(|w| longest.max(w))
    });
    // A fail-closed refusal violated nothing: the limits could not be checked.
    Limited {
        rule: rule.name.clone(),
        violated_policies: denied
            .iter()
            .filter(|(_, d)| d.source != Source::FailedClosed)
            .map(|(l, _)| l.name.clone())
            .collect(),
        retry_after,
        unavailable: denied.iter().any(|(_, d)| d.source == Source::FailedClosed),
    }
}

pin_project! {
    /// The response future of [`RateLimit`]: decides, then runs the inner service (or
    /// answers 429), then adds the rate-limit headers.
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Deciding {
            deciding: Deciding,
            service: Option<S>,
            request: Option<Request<B>>,
        },
        Calling {
            #[pin]
            future: S::Future,
            headers: Option<HeaderMap>,
        },
        Answered {
            response: Option<Response<Body>>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn calling(future: S::Future, headers: Option<HeaderMap>) -> Self {
        Self {
            state: State::Calling { future, headers },
        }
    }

    fn answered(response: Response<Body>) -> Self {
        Self {
            state: State::Answered {
                response: Some(response),
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<Body>>,
{
    type Output = Result<Response<Body>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                StateProjection::Deciding {
                    deciding,
                    service,
                    request,
                } => {
                    let verdict = match deciding.as_mut().poll(cx) {
                        Poll::Ready(verdict) => verdict,
                        Poll::Pending => return Poll::Pending,
                    };
                    match (verdict, service.take(), request.take()) {
                        (Verdict::Serve(headers), Some(mut service), Some(request)) => {
                            let future = service.call(request);
                            state.set(State::Calling { future, headers });
                        }
                        (Verdict::Answer(response), _, _) => {
                            state.set(State::Answered {
                                response: Some(response),
                            });
                        }
                        // Polled again after completion: nothing left to do.
                        _ => return Poll::Pending,
                    }
                }
                StateProjection::Calling { future, headers } => {
                    let mut response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Pending => return Poll::Pending,
                    };
                    if let Some(headers) = headers.take() {
                        headers::merge(response.headers_mut(), &headers);
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProjection::Answered { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
