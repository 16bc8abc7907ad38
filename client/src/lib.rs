//! Atomic rate limiting in Redis from async Rust: the client of the redlimit module.
//!
//! A [`RateLimiter`] asks the module's `RL.*` commands for one decision per round trip,
//! on a single Redis, a Sentinel-managed primary or a Redis Cluster. Without a server
//! ([`Backend::memory`]) it runs the very same algorithms in memory.
//!
//! ```
//! use redlimit::{Backend, Policy, RateLimiter, Source};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 5 requests at once, then one more every second, per user.
//! let policy = Policy::token_bucket(5, 1, 1_000)?;
//! // Backend::redis("redis://127.0.0.1:6379")? in production.
//! let limiter = RateLimiter::builder(Backend::memory()).build()?;
//! for _ in 0..5 {
//!     assert!(limiter.check("user:42", &policy).await?.allowed);
//! }
//! let denied = limiter.check("user:42", &policy).await?;
//! assert!(!denied.allowed);
//! let wait = denied.retry_after.expect("a token comes back within a second");
//! assert!(wait <= std::time::Duration::from_secs(1));
//! assert_eq!(denied.source, Source::Memory);
//! # Ok(())
//! # }
//! ```
//!
//! # Operations
//!
//! - [`check`](RateLimiter::check) / [`check_cost`](RateLimiter::check_cost): count a
//!   request if the policy allows it; [`peek`](RateLimiter::peek): ask without counting.
//! - [`check_all`](RateLimiter::check_all): several limits, all or nothing, atomically.
//! - [`wait`](RateLimiter::wait): for outbound callers, wait until allowed (served in
//!   order for token buckets) or give up at a deadline.
//! - [`admit`](RateLimiter::admit): for outbound calls that need several limits at once
//!   with different costs (1 request and N tokens): one reservation across them, and a
//!   [`Permit`] to [`settle`](Permit::settle) with the real cost once known.
//! - [`acquire`](RateLimiter::acquire) / [`renew`](RateLimiter::renew) /
//!   [`release`](RateLimiter::release): concurrency leases.
//! - [`record_usage`](RateLimiter::record_usage) / [`usage`](RateLimiter::usage): usage
//!   counters for reporting (tokens spent per hour for the last day), not limits.
//! - [`reset`](RateLimiter::reset), [`status`](RateLimiter::status).
//!
//! # When Redis is slow or down
//!
//! Every decision waits at most the [timeout](Builder::timeout) (50 ms by default);
//! then the [`FailurePolicy`] answers: fail open, fail closed, or decide in memory
//! (the default). A circuit breaker stops calling a dead server for a cool-down, so it
//! costs one timeout per cool-down instead of one per request, and recovers by itself.
//! Every [`Decision`] says where it came from ([`Source`]). Optionally, denied keys are
//! answered locally until their retry time ([`Builder::deny_cache`]).
//!
//! # Features
//!
//! - `tracing`: a `debug` span per operation (named `redlimit`; the decision in its
//!   fields), events for backend errors and breaker changes.
//! - `metrics`: counters and a latency histogram (names in the `metrics` docs below).
//!
//! Metrics, with the `metrics` feature: `redlimit_decisions_total{operation, outcome,
//! source}`, `redlimit_decision_seconds{operation, source}`,
//! `redlimit_backend_errors_total{kind}`, `redlimit_breaker_transitions_total{to}`.

mod admit;
mod backend;
mod breaker;
mod decision;
mod deny_cache;
mod engine;
mod error;
mod health;
mod limiter;
mod local;
mod observe;
mod permit;
mod protocol;
mod slot;
mod usage;
mod verify;

#[cfg(feature = "axum")]
pub mod http;

pub use admit::{Admission, Permit};
pub use backend::Backend;
pub use decision::{AllDecision, Decision, Source, Status, StoredPolicy};
pub use engine::ServerEngine;
pub use engine::scripts;
pub use error::{Error, ErrorKind, Result};
pub use health::Health;
pub use limiter::{Builder, FailurePolicy, RateLimiter};
pub use redlimit_core::{
    Algorithm, ArgumentError, Concurrency, FixedWindow, Policy, SlidingCounter, SlidingWindow,
    Throttle, TokenBucket, UsageShape,
};
pub use usage::UsageBucket;
pub use verify::{BackendInfo, Engine, NodeInfo};

/// Re-exported so that callers can build backends without naming another version.
pub use redis;
