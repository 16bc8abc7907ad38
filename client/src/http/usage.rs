//! A usage route, GitHub `/rate_limit` style: the calling caller's quota under every
//! rule and route limit, read without counting anything.

use super::caller::Caller;
use super::layer::{RateLimitLayer, Shared};
use super::rules::{Rule, redis_key};
use super::service::{identity, peer};
use axum::body::Body;
use axum::extract::Request;
use futures_util::future::join_all;
use http::{HeaderValue, Response, StatusCode, header};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// The future of the [`usage`](RateLimitLayer::usage) handler.
pub type UsageFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

impl RateLimitLayer {
    /// A handler answering the caller's quota under every rule and route limit of this
    /// layer, without counting (`PEEK` with cost 0), as JSON:
    /// `{"caller": {...}, "resources": {"<rule>": {"<limit>": {"limit", "remaining",
    /// "used", "reset_after", "reset"}}}}` (`reset`: Unix seconds). Exempt callers get
    /// `"exempt": true` and no resources.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use redlimit::http::{RateLimitLayer, Settings};
    /// use redlimit::RateLimiter;
    ///
    /// let layer = RateLimitLayer::new(RateLimiter::memory(), Settings::default());
    /// let app: Router = Router::new().route("/rate_limit", get(layer.usage())).layer(layer);
    /// ```
    pub fn usage(&self) -> impl Fn(Request) -> UsageFuture + Clone + Send + Sync + 'static {
        let shared = Arc::clone(self.shared());
        move |request: Request| {
            let shared = Arc::clone(&shared);
            Box::pin(async move { usage(&shared, request).await })
        }
    }
}

async fn usage(shared: &Shared, request: Request) -> Response<Body> {
    let (parts, _) = request.into_parts();
    let settings = Arc::clone(
        &shared
            .settings
            .read()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let Some(peer) = peer(&parts) else {
        return json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &serde_json::json!({ "error": "the server records no peer addresses" }),
        );
    };
    let caller = parts
        .extensions
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(|| settings.resolver.resolve(&parts, Some(peer)));
    let about = serde_json::json!({
        "ip": caller.ip.map(|ip| ip.to_string()),
        "user": caller.user,
        "tier": caller.tier,
    });
    if settings.exempt.caller(&caller) {
        return json(
            StatusCode::OK,
            &serde_json::json!({ "caller": about, "exempt": true, "resources": {} }),
        );
    }
    let routes = shared
        .routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let rules: Vec<&Rule> = settings
        .rules
        .rules
        .iter()
        .chain(settings.rules.default.as_ref())
        .chain(routes.iter().map(|rule| &**rule))
        .collect();
    // Every limit of every rule, keyed as a request of this caller would be.
    let mut asks = Vec::new();
    for rule in &rules {
        let own = identity(shared, &settings, rule.key, &parts, &caller, peer);
        let limits = rule.limits_at(rule.tier_index(own.tier.as_deref()));
        for limit in limits {
            let key = match limit.key {
                Some(kind) if kind != rule.key => {
                    let other = identity(shared, &settings, kind, &parts, &caller, peer);
                    redis_key(&settings.prefix, &rule.name, &other, &limit.name)
                }
                _ => redis_key(&settings.prefix, &rule.name, &own, &limit.name),
            };
            asks.push((rule.name.as_str(), limit, key));
        }
    }
    let answers = join_all(
        asks.iter()
            .map(|(_, limit, key)| shared.limiter.peek(key, &limit.policy, 0)),
    )
    .await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut resources = serde_json::Map::new();
    for ((rule, limit, _), answer) in asks.iter().zip(answers) {
        let entry = match answer {
            Ok(decision) => {
                let reset_after = super::headers::ceil_secs(decision.reset_after);
                serde_json::json!({
                    "limit": decision.limit,
                    "remaining": decision.remaining,
                    "used": decision.limit.saturating_sub(decision.remaining),
                    "reset_after": reset_after,
                    "reset": now.saturating_add(reset_after),
                })
            }
            Err(error) => serde_json::json!({ "error": error.to_string() }),
        };
        if let serde_json::Value::Object(limits) = resources
            .entry((*rule).to_owned())
            .or_insert_with(|| serde_json::json!({}))
        {
            limits.insert(limit.name.clone(), entry);
        }
    }
    json(
        StatusCode::OK,
        &serde_json::json!({ "caller": about, "resources": resources }),
    )
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
