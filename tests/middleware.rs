//! End-to-end tests of the tower/axum middleware (`redlimit::http`) against a real
//! server with the module: an axum app driven in-process with `oneshot` (any peer
//! address through `ConnectInfo`) and over real TCP. Key extraction, rules, exemptions,
//! responses and headers, failure policies with the server killed or hung under load,
//! shadow mode, configuration, hot reload and metrics.
//!
//! Build the module first (`cargo build -p redlimit-module`). Most tests use one server
//! (Redis 8.2 when installed); the failure-policy tests run on every server found.
//! Timings are printed, and asserted only with generous bounds.

#[path = "middleware/support.rs"]
mod support;

#[path = "middleware/callers.rs"]
mod callers;
#[path = "middleware/config.rs"]
mod config;
#[path = "middleware/exemptions.rs"]
mod exemptions;
#[path = "middleware/extensions.rs"]
mod extensions;
#[path = "middleware/failure.rs"]
mod failure;
#[path = "middleware/health.rs"]
mod health;
#[path = "middleware/identity.rs"]
mod identity;
#[path = "middleware/metrics.rs"]
mod metrics;
#[path = "middleware/penalty.rs"]
mod penalty;
#[path = "middleware/reload.rs"]
mod reload;
#[path = "middleware/responses.rs"]
mod responses;
#[path = "middleware/routes.rs"]
mod routes;
#[path = "middleware/rules.rs"]
mod rules;
#[path = "middleware/several.rs"]
mod several;
#[path = "middleware/shadow.rs"]
mod shadow;
#[path = "middleware/tcp.rs"]
mod tcp;
#[path = "middleware/usage.rs"]
mod usage;
