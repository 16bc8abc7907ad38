//! `tracing` events and `metrics` series, each behind its feature; without them these
//! functions compile to nothing.
//!
//! Metrics: `redlimit_decisions_total{operation, outcome, source}`,
//! `redlimit_decision_seconds{operation, source}` (histogram),
//! `redlimit_backend_errors_total{kind}`, `redlimit_breaker_transitions_total{to}`.

use crate::breaker::Change;
use crate::decision::Source;
use crate::error::Error;
use std::time::Duration;

/// A decision was made.
#[allow(unused_variables)]
pub fn decision(operation: &'static str, allowed: bool, source: Source, elapsed: Duration) {
    let outcome = if allowed { "allowed" } else { "denied" };
    #[cfg(feature = "metrics")]
    {
        metrics::counter!("redlimit_decisions_total",
            "operation" => operation, "outcome" => outcome, "source" => source.as_str())
        .increment(1);
        metrics::histogram!("redlimit_decision_seconds",
            "operation" => operation, "source" => source.as_str())
        .record(elapsed.as_secs_f64());
    }
    #[cfg(feature = "tracing")]
    tracing::debug!(
        operation,
        outcome,
        source = source.as_str(),
        elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "redlimit decision"
    );
}

/// The server could not decide; logged (a warning) when `log` says so, counted always.
#[allow(unused_variables)]
pub fn backend_error(operation: &'static str, error: &Error, log: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!("redlimit_backend_errors_total", "kind" => error.kind().as_str())
        .increment(1);
    #[cfg(feature = "tracing")]
    if log {
        tracing::warn!(operation, kind = error.kind().as_str(), %error, "redlimit backend error");
    }
}

/// Lasting trouble (the module missing, or unreadable replies) is over: a call
/// succeeded again.
#[allow(unused_variables)]
pub fn trouble_ended(module_was_missing: bool) {
    #[cfg(feature = "tracing")]
    if module_was_missing {
        tracing::info!("redlimit: the redlimit module answers again: the server decides");
    } else {
        tracing::info!("redlimit: the server's replies are readable again: the server decides");
    }
}

/// The circuit breaker opened or closed.
#[allow(unused_variables)]
pub fn breaker(change: Change, cool_down: Duration) {
    let to = match change {
        Change::Opened => "open",
        Change::Closed => "closed",
    };
    #[cfg(feature = "metrics")]
    metrics::counter!("redlimit_breaker_transitions_total", "to" => to).increment(1);
    #[cfg(feature = "tracing")]
    match change {
        Change::Opened => tracing::warn!(
            cool_down_ms = u64::try_from(cool_down.as_millis()).unwrap_or(u64::MAX),
            "redlimit circuit breaker opened: the server is left alone for a cool-down"
        ),
        Change::Closed => tracing::info!("redlimit circuit breaker closed: the server is back"),
    }
}

/// `ServerEngine::Auto` chose an engine for `node`.
#[allow(unused_variables)]
pub fn engine_chosen(module: bool, node: &str) {
    #[cfg(feature = "tracing")]
    if module {
        tracing::info!(
            node,
            "redlimit: the redlimit module is loaded: RL.* commands decide"
        );
    } else {
        tracing::info!(
            node,
            "redlimit: no redlimit module: Lua scripts decide (load the module for speed)"
        );
    }
}
