//! Tower/axum middleware (feature `axum`): per-IP, per-user, per-API-key, per-route and
//! per-tier limits decided in Redis (several callers in one rule, one `RL.ALL` per hash
//! slot), with standard headers, exemptions, shadow mode, TOML configuration with
//! environment overrides and hot reload (feature `config`), JWT users (feature `jwt`),
//! limits next to routes ([`RateLimitLayer::limit`]) that may count only some outcomes
//! ([`RouteLimit::count_when`]), progressive penalties, metrics through the `metrics`
//! facade ([`PrometheusExporter`] for a ready-made `/metrics`), a `/health` handler
//! ([`RateLimitLayer::health`]), a usage route ([`RateLimitLayer::usage`]) and the
//! resolved [`Caller`] in request extensions.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use redlimit::http::{Config, RateLimitLayer};
//! use redlimit::{Backend, RateLimiter};
//! use std::net::SocketAddr;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml(r#"
//!     [[rules]]
//!     name = "hello"
//!     path = "/api/hello"
//!     methods = ["GET"]
//!     limits = [{ name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 1000 }]
//! "#)?;
//! let limiter = RateLimiter::builder(Backend::redis("redis://127.0.0.1:6379")?).build()?;
//! let layer = RateLimitLayer::from_config(limiter, &config)?;
//! let metrics = layer.metrics();
//! let app = Router::new()
//!     .route("/api/hello", get(|| async { "hello" }))
//!     .route("/metrics", get(move || async move { metrics.render() }))
//!     .layer(layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // The peer address is needed to know who is asking.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! The guide is `docs/middleware.md`.

mod caller;
mod check;
mod config;
mod decision;
mod deferred;
mod exporter;
mod future;
mod headers;
mod health;
#[cfg(feature = "jwt")]
mod jwt;
mod layer;
mod metrics;
mod penalty;
mod rejection;
mod reload;
mod route;
mod rules;
mod service;
mod usage;

pub use caller::{Caller, ForwardedHeader, Identify, Identity, LimitDecision};
pub use config::{
    Config, ConfigError, ENV_PREFIX, ExemptConfig, FailureConfig, HeaderStyleConfig,
    IdentityConfig, JwtConfig, LimitAlgorithm, LimitConfig, PenaltyConfig, RuleConfig, Settings,
    TierConfig,
};
pub use exporter::PrometheusExporter;
pub use future::ResponseFuture;
pub use headers::HeaderStyle;
pub use health::HealthFuture;
pub use layer::{CostFn, RateLimitLayer};
pub use metrics::Metrics;
pub use rejection::{Limited, QUOTA_EXCEEDED, RejectionFn, TEMPORARY_REDUCED_CAPACITY, problem};
pub use reload::Reloader;
pub use route::RouteLimit;
pub use rules::{KeyKind, NamedLimit};
pub use service::RateLimit;
pub use usage::UsageFuture;
