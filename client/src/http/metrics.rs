//! Per-rule counters and a decision-latency histogram: recorded through the `metrics`
//! facade (so that one exporter serves the app's, the client's and the layer's series,
//! e.g. [`PrometheusExporter`](super::PrometheusExporter)), and kept per layer too
//! ([`Metrics::render`]: this layer's series only). The facade's handles are registered
//! once per rule, on its first decision: install the recorder before serving.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::exporter::{BUCKETS, escape};

/// Reads one counter of a rule's series.
type Counter = fn(&RuleSeries) -> &AtomicU64;

/// How one decision ended, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allowed,
    Denied,
    ShadowDenied,
}

/// The facade's handles of one rule's series.
#[derive(Debug)]
struct Facade {
    allowed: metrics::Counter,
    denied: metrics::Counter,
    shadow_denied: metrics::Counter,
    backend_errors: metrics::Counter,
    latency: metrics::Histogram,
}

impl Facade {
    fn register(rule: &str) -> Self {
        let counter = |name: &'static str, help: &'static str| {
            metrics::describe_counter!(name, help);
            metrics::counter!(name, "rule" => rule.to_owned())
        };
        metrics::describe_histogram!(
            "redlimit_http_decision_seconds",
            metrics::Unit::Seconds,
            "Time to decide a request."
        );
        Self {
            allowed: counter("redlimit_http_allowed_total", "Requests allowed."),
            denied: counter("redlimit_http_denied_total", "Requests refused with 429."),
            shadow_denied: counter(
                "redlimit_http_shadow_denied_total",
                "Requests over the limit let through by shadow mode.",
            ),
            backend_errors: counter(
                "redlimit_http_backend_errors_total",
                "Decisions the server could not make (answered by the failure policy).",
            ),
            latency: metrics::histogram!("redlimit_http_decision_seconds", "rule" => rule.to_owned()),
        }
    }
}

#[derive(Debug)]
struct RuleSeries {
    facade: Facade,
    allowed: AtomicU64,
    denied: AtomicU64,
    shadow_denied: AtomicU64,
    backend_errors: AtomicU64,
    /// Decisions by latency bucket (each in the first bucket it fits: cumulative when
    /// rendered).
    latency: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_ns: AtomicU64,
}

impl RuleSeries {
    fn new(rule: &str) -> Self {
        Self {
            facade: Facade::register(rule),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
            shadow_denied: AtomicU64::new(0),
            backend_errors: AtomicU64::new(0),
            latency: Default::default(),
            latency_count: AtomicU64::new(0),
            latency_sum_ns: AtomicU64::new(0),
        }
    }
}

/// The middleware's metrics; clone the handle from the layer and serve
/// [`render`](Metrics::render) on your metrics endpoint.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    rules: Arc<RwLock<BTreeMap<String, Arc<RuleSeries>>>>,
}

impl Metrics {
    /// Runs `f` on `rule`'s series, registering them on the rule's first decision.
    fn with_series<T>(&self, rule: &str, f: impl FnOnce(&RuleSeries) -> T) -> T {
        // Every request reads; only a rule's first decision writes.
        {
            let rules = self.rules.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = rules.get(rule) {
                return f(series);
            }
        }
        let series = {
            let mut rules = self.rules.write().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                rules
                    .entry(rule.to_owned())
                    .or_insert_with(|| Arc::new(RuleSeries::new(rule))),
            )
        };
        f(&series)
    }

    /// Counts one decision of `rule`.
    pub(crate) fn decision(
        &self,
        rule: &str,
        outcome: Outcome,
        backend_error: bool,
        latency: Duration,
    ) {
        self.with_series(rule, |series| {
            let (counter, facade) = match outcome {
                Outcome::Allowed => (&series.allowed, &series.facade.allowed),
                Outcome::Denied => (&series.denied, &series.facade.denied),
                Outcome::ShadowDenied => (&series.shadow_denied, &series.facade.shadow_denied),
            };
            counter.fetch_add(1, Ordering::Relaxed);
            facade.increment(1);
            if backend_error {
                series.backend_errors.fetch_add(1, Ordering::Relaxed);
                series.facade.backend_errors.increment(1);
            }
            let secs = latency.as_secs_f64();
            series.facade.latency.record(secs);
            // Its own bucket only: render sums them up.
            if let Some(i) = BUCKETS.iter().position(|bound| secs <= *bound) {
                if let Some(bucket) = series.latency.get(i) {
                    bucket.fetch_add(1, Ordering::Relaxed);
                }
            }
            series.latency_count.fetch_add(1, Ordering::Relaxed);
            let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
            series.latency_sum_ns.fetch_add(ns, Ordering::Relaxed);
        });
    }

    /// Counts a backend error that left no decision (the request was let through).
    pub(crate) fn backend_error(&self, rule: &str) {
        self.with_series(rule, |series| {
            series.backend_errors.fetch_add(1, Ordering::Relaxed);
            series.facade.backend_errors.increment(1);
        });
    }

    /// Every series in the Prometheus text format (version 0.0.4).
    #[must_use]
    pub fn render(&self) -> String {
        let rules: Vec<(String, Arc<RuleSeries>)> = self
            .rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, series)| (name.clone(), Arc::clone(series)))
            .collect();
        let mut out = String::new();
        let counters: [(&str, &str, Counter); 4] = [
            ("redlimit_http_allowed_total", "Requests allowed.", |s| {
                &s.allowed
            }),
            (
                "redlimit_http_denied_total",
                "Requests refused with 429.",
                |s| &s.denied,
            ),
            (
                "redlimit_http_shadow_denied_total",
                "Requests over the limit let through by shadow mode.",
                |s| &s.shadow_denied,
            ),
            (
                "redlimit_http_backend_errors_total",
                "Decisions the server could not make (answered by the failure policy).",
                |s| &s.backend_errors,
            ),
        ];
        for (name, help, get) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (rule, series) in &rules {
                let value = get(series).load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{rule=\"{}\"}} {value}", escape(rule));
            }
        }
        let name = "redlimit_http_decision_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to decide a request.\n# TYPE {name} histogram"
        );
        for (rule, series) in &rules {
            let rule = escape(rule);
            let mut cumulative = 0;
            for (bound, bucket) in BUCKETS.iter().zip(&series.latency) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{rule=\"{rule}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = series.latency_count.load(Ordering::Relaxed);
            let sum = Duration::from_nanos(series.latency_sum_ns.load(Ordering::Relaxed));
            let _ = writeln!(out, "{name}_bucket{{rule=\"{rule}\",le=\"+Inf\"}} {count}");
            let _ = writeln!(out, "{name}_sum{{rule=\"{rule}\"}} {}", sum.as_secs_f64());
            let _ = writeln!(out, "{name}_count{{rule=\"{rule}\"}} {count}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let metrics = Metrics::default();
        metrics.decision("hello", Outcome::Allowed, false, Duration::from_micros(300));
        metrics.decision("hello", Outcome::Denied, true, Duration::from_millis(3));
        let text = metrics.render();
        assert!(text.contains("redlimit_http_allowed_total{rule=\"hello\"} 1"));
        assert!(text.contains("redlimit_http_denied_total{rule=\"hello\"} 1"));
        assert!(text.contains("redlimit_http_backend_errors_total{rule=\"hello\"} 1"));
        assert!(
            text.contains("redlimit_http_decision_seconds_bucket{rule=\"hello\",le=\"0.0005\"} 1")
        );
        assert!(
            text.contains("redlimit_http_decision_seconds_bucket{rule=\"hello\",le=\"0.005\"} 2")
        );
        assert!(text.contains("redlimit_http_decision_seconds_count{rule=\"hello\"} 2"));
    }
}
