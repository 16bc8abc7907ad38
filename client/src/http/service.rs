//! The tower [`Service`]: finds the rule, the caller and the keys of a request
//! synchronously, then hands the decision to a [`ResponseFuture`].

use super::caller::{Caller, Identity, digest};
use super::config::Settings;
use super::decision::Decide;
use super::decision::RuleRef;
use super::future::{Deciding, ResponseFuture};
use super::layer::Shared;
use super::rules::{KeyKind, Rule, redis_key};
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use tower_service::Service;

/// The rate-limiting service around `S`. Always ready when `S` is; over-limit requests
/// get a response (429), never an error.
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    /// The rule of a limit attached to a route in code; else the settings' rules.
    own: Option<Arc<Rule>>,
}

impl<S> std::fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

impl<S> RateLimit<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>, own: Option<Arc<Rule>>) -> Self {
        Self { inner, shared, own }
    }
}

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
        let settings = Arc::clone(
            &self
                .shared
                .settings
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let (mut parts, body) = request.into_parts();
        match plan(&self.shared, &settings, &parts, self.own.as_ref()) {
            Plan::Pass => {
                let future = self.inner.call(Request::from_parts(parts, body));
                ResponseFuture::calling(future, None)
            }
            Plan::Exempt(caller) => {
                share(&mut parts, caller);
                let future = self.inner.call(Request::from_parts(parts, body));
                ResponseFuture::calling(future, None)
            }
            Plan::Answer(response) => ResponseFuture::answered(response),
            Plan::Decide(caller, decide) => {
                share(&mut parts, caller);
                let request = Request::from_parts(parts, body);
                let mut deciding: Deciding =
                    Box::pin(decide.run(Arc::clone(&self.shared), settings));
                // In memory a decision never waits: take it now and call the service
                // that was polled ready, as an in-process limiter does.
                if self.shared.limiter.remote().is_none() {
                    let mut now = Context::from_waker(Waker::noop());
                    if let Poll::Ready(verdict) = deciding.as_mut().poll(&mut now) {
                        return ResponseFuture::decided(verdict, &mut self.inner, request);
                    }
                }
                // Keep the service that was polled ready for after the decision; leave a
                // clone for the next call.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::deciding(deciding, inner, request)
            }
        }
    }
}

/// Puts the caller in the request's extensions for the handler, unless an outer
/// layer did (its decisions stay; this layer's are added to them).
fn share(parts: &mut Parts, caller: Caller) {
    if parts.extensions.get::<Caller>().is_none() {
        parts.extensions.insert(caller);
    }
}

enum Plan {
    Pass,
    /// An exempt caller: served, with the caller in the request's extensions.
    Exempt(Caller),
    Answer(Response<Body>),
    Decide(Caller, Decide),
}

/// The peer address the server recorded (axum's `ConnectInfo`, or a bare `SocketAddr`).
pub(crate) fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .or_else(|| parts.extensions.get::<SocketAddr>().map(SocketAddr::ip))
}

/// Decides synchronously what a request needs.
fn plan(shared: &Shared, settings: &Settings, parts: &Parts, own: Option<&Arc<Rule>>) -> Plan {
    // Inside `Router::nest` the URI is stripped of the prefix; rules name full paths.
    let path = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| parts.uri.path(), |original| original.0.path());
    if settings.exempt.path(path) {
        return Plan::Pass;
    }
    let (rule_ref, rule) = match own {
        Some(rule) => (RuleRef::Own(Arc::clone(rule)), &**rule),
        None => match settings.rules.find_indexed(&parts.method, path) {
            Some((index, rule)) => (RuleRef::Index(index), rule),
            None => return Plan::Pass,
        },
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
        return Plan::Exempt(caller);
    }
    let identity = identity(shared, settings, rule.key, parts, &caller, peer);
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
    // Each limit counts its own caller (the rule's by default): limits of one caller
    // share a hash tag; several callers make the decision spread over several.
    let mut spread = false;
    let keys = limits
        .iter()
        .map(|limit| match limit.key {
            Some(kind) if kind != rule.key => {
                let own = self::identity(shared, settings, kind, parts, &caller, peer);
                spread |= own.key != identity.key;
                redis_key(&settings.prefix, &rule.name, &own, &limit.name)
            }
            _ => redis_key(&settings.prefix, &rule.name, &identity, &limit.name),
        })
        .collect();
    Plan::Decide(
        caller,
        Decide {
            rule: rule_ref,
            tier,
            keys,
            cost,
            spread,
            penalty: rule
                .penalty
                .map(|_| redis_key(&settings.prefix, &rule.name, &identity, "")),
        },
    )
}

/// The key and tier a request counts under, by the rule's key kind; the client IP when
/// the kind's own source is missing (no API key, no valid token, no custom answer).
pub(crate) fn identity(
    shared: &Shared,
    settings: &Settings,
    kind: KeyKind,
    parts: &Parts,
    caller: &Caller,
    peer: IpAddr,
) -> Identity {
    let by_ip = || Identity {
        key: settings.resolver.ip_key(caller.ip.unwrap_or(peer)),
        tier: caller.tier.clone(),
    };
    match kind {
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

fn misconfigured() -> Response<Body> {
    let mut response = Response::new(Body::from(
        "rate limiting is misconfigured: the server records no peer addresses",
    ));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}
