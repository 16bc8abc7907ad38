//! A ready-made `/health` handler: [`RateLimiter::health`](crate::RateLimiter::health)
//! as JSON, 200 when decisions are the server's, 503 otherwise.

use super::layer::RateLimitLayer;
use crate::{Engine, Health};
use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use std::future::Future;
use std::pin::Pin;

/// The future of the [`health`](RateLimitLayer::health) handler.
pub type HealthFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

impl RateLimitLayer {
    /// A handler for `GET /health` reporting this layer's limiter: Redis reachable, the
    /// check's latency, the module loaded and its version, the circuit breaker; 200
    /// (`"status": "ok"`) when all is well, else 503 (`"degraded"`). The check runs on
    /// every call: poll it every few seconds, not per request.
    ///
    /// ```
    /// use axum::{Router, routing::get};
    /// use redlimit::http::{RateLimitLayer, Settings};
    /// use redlimit::RateLimiter;
    ///
    /// let layer = RateLimitLayer::new(RateLimiter::memory(), Settings::default());
    /// let app: Router = Router::new().route("/health", get(layer.health())).layer(layer);
    /// ```
    pub fn health(&self) -> impl Fn() -> HealthFuture + Clone + Send + Sync + 'static {
        let limiter = self.shared().limiter.clone();
        move || {
            let limiter = limiter.clone();
            Box::pin(async move { answer(&limiter.health().await) })
        }
    }
}

fn answer(health: &Health) -> Response<Body> {
    let body = serde_json::json!({
        "status": if health.is_healthy() { "ok" } else { "degraded" },
        "redis": {
            "engine": match health.engine {
                Engine::Module => "module",
                Engine::Memory => "memory",
                Engine::Scripts => "scripts",
            },
            "reachable": health.reachable,
            "latency_ms": health.latency.as_secs_f64() * 1_000.0,
            "module_loaded": health.module_loaded,
            "module_version": health.module_version,
            "breaker": if health.breaker_open { "open" } else { "closed" },
            "error": health.error,
        },
    });
    let mut response = Response::new(Body::from(body.to_string()));
    if !health.is_healthy() {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
