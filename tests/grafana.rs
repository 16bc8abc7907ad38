//! The Grafana dashboard (`deploy/grafana/redlimit.json`) reads only series the code
//! exports, with the labels they carry: no panel may drift into "No data" after a rename.
//!
//! The middleware's series are taken from a real `Metrics::render` after decisions made
//! in memory on the example configuration; the client's decision series from what a
//! recorder receives while a limiter decides, and its other `metrics`-facade series
//! from the macro calls in `client/src/observe.rs`. Every metric name in a query must be one of
//! them (histograms also as `_bucket`/`_sum`/`_count`), and every label a query selects,
//! groups by or prints must be one they carry (or `job`/`instance`, added by Prometheus).

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use redlimit::http::{Config, RateLimitLayer};
use redlimit::{Backend, RateLimiter};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use tower::ServiceExt;

/// Labels Prometheus adds to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// How a series is exposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    /// `_bucket{le}`, `_sum`, `_count`; from the `metrics` facade, possibly a summary
    /// instead (`{quantile}`, `_sum`, `_count`), depending on the exporter.
    Histogram,
}

/// An exported series: its kind and labels.
#[derive(Clone, Debug)]
struct Series {
    kind: Kind,
    labels: BTreeSet<String>,
}

type Catalogue = BTreeMap<String, Series>;

fn read(path: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The middleware's series, read from what it renders after real decisions.
async fn middleware_series() -> Catalogue {
    let config = Config::from_toml(&read("examples/axum_api.toml")).unwrap();
    let limiter = RateLimiter::builder(Backend::memory()).build().unwrap();
    let layer = RateLimitLayer::from_config(limiter, &config).unwrap();
    let metrics = layer.metrics();
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello\n" }))
        .layer(layer);
    let mut statuses = Vec::new();
    for _ in 0..11 {
        let mut request = Request::get("/api/hello").body(Body::empty()).unwrap();
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(peer));
        statuses.push(app.clone().oneshot(request).await.unwrap().status());
    }
    // The example's burst of 10, then a refusal: both outcomes were counted.
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    parse_exposition(&metrics.render())
}

/// Series names, kinds and labels from the Prometheus text format.
fn parse_exposition(text: &str) -> Catalogue {
    let mut kinds = BTreeMap::new();
    let mut labels: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let kind = match kind {
                "counter" => Kind::Counter,
                "histogram" => Kind::Histogram,
                other => panic!("unexpected type {other} for {name}"),
            };
            kinds.insert(name.to_owned(), kind);
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, rest) = line.split_once('{').unwrap_or((line, ""));
            let names = rest
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(label, _)| label.trim().to_owned());
            labels.entry(name.to_owned()).or_default().extend(names);
        }
    }
    kinds
        .into_iter()
        .map(|(name, kind)| {
            let sample = match kind {
                Kind::Counter => name.clone(),
                Kind::Histogram => format!("{name}_count"),
            };
            let labels = labels
                .get(&sample)
                .unwrap_or_else(|| panic!("no sample of {name} rendered"))
                .clone();
            (name, Series { kind, labels })
        })
        .collect()
}

/// The client's series: every `counter!`/`histogram!`/`gauge!` call in `source`, its
/// first string literal the name, each literal followed by `=>` a label.
fn facade_series(source: &str) -> Catalogue {
    let mut catalogue = Catalogue::new();
    for (macro_name, kind) in [
        ("counter!(", Kind::Counter),
        ("gauge!(", Kind::Counter),
        ("histogram!(", Kind::Histogram),
    ] {
        for (start, _) in source.match_indices(macro_name) {
            let call = balanced(&source[start + macro_name.len()..]);
            let literals = string_literals(call);
            let (name, _) = literals.first().expect("a metric name");
            let labels = literals
                .iter()
                .filter(|(_, after)| after.trim_start().starts_with("=>"))
                .map(|(label, _)| label.clone())
                .collect();
            catalogue.insert(name.clone(), Series { kind, labels });
        }
    }
    catalogue
}

/// The text up to the `)` that closes an already opened `(`.
fn balanced(text: &str) -> &str {
    let mut depth = 1;
    for (index, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &text[..index];
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced macro call: {text}")
}

/// Each `"..."` of `text` (no escapes needed here) with the text after it.
fn string_literals(text: &str) -> Vec<(String, &str)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some((_, after_quote)) = rest.split_once('"') {
        let (literal, after) = after_quote.split_once('"').expect("a closing quote");
        found.push((literal.to_owned(), after));
        rest = after;
    }
    found
}

/// Every query of the dashboard: each target's `expr` and each variable's query, with
/// the legends that print labels.
fn queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    collect(dashboard, &mut found);
    found
}

fn collect(value: &serde_json::Value, found: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                let legend = map.get("legendFormat").and_then(|l| l.as_str());
                found.push((expr.to_owned(), legend.unwrap_or_default().to_owned()));
            }
            if let Some(definition) = map.get("definition").and_then(|d| d.as_str()) {
                found.push((definition.to_owned(), String::new()));
            }
            map.values().for_each(|v| collect(v, found));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, found)),
        _ => {}
    }
}

/// The identifiers of `text` that start with `redlimit_`, with what follows each.
fn metric_names(text: &str) -> Vec<(&str, &str)> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (start, _) in text.match_indices("redlimit_") {
        if text[..start].ends_with(is_name) {
            continue;
        }
        let end = text[start..]
            .find(|c| !is_name(c))
            .map_or(text.len(), |offset| start + offset);
        if end > start + "redlimit_".len() {
            found.push((&text[start..end], &text[end..]));
        }
    }
    found
}

/// The labels a series name carries in Prometheus, or `None` when the code exports no
/// such series.
fn labels_of(catalogue: &Catalogue, name: &str) -> Option<BTreeSet<String>> {
    let mut labels = if let Some(series) = catalogue.get(name) {
        let mut labels = series.labels.clone();
        if series.kind == Kind::Histogram {
            labels.insert("quantile".to_owned()); // a summary, if the exporter makes one
        }
        labels
    } else {
        let (base, suffix) = ["_bucket", "_sum", "_count"]
            .into_iter()
            .find_map(|suffix| name.strip_suffix(suffix).map(|base| (base, suffix)))?;
        let series = catalogue.get(base).filter(|s| s.kind == Kind::Histogram)?;
        let mut labels = series.labels.clone();
        if suffix == "_bucket" {
            labels.insert("le".to_owned());
        } else {
            labels.remove("le");
        }
        labels
    };
    labels.extend(TARGET_LABELS.map(str::to_owned));
    Some(labels)
}

/// The label names of a `{...}` selector at the start of `text`.
fn selector_labels(text: &str) -> Vec<String> {
    let Some(inner) = text.strip_prefix('{').and_then(|t| t.split_once('}')) else {
        return Vec::new();
    };
    inner
        .0
        .split(',')
        .filter_map(|matcher| matcher.split(['=', '!']).next())
        .map(|label| label.trim().to_owned())
        .filter(|label| !label.is_empty())
        .collect()
}

/// The labels of every `by (...)` / `without (...)` clause and `{{label}}` legend.
fn grouping_labels(expr: &str, legend: &str) -> Vec<String> {
    let mut labels = Vec::new();
    for keyword in ["by (", "without ("] {
        for (start, _) in expr.match_indices(keyword) {
            let list = &expr[start + keyword.len()..];
            let list = list.split_once(')').map_or(list, |(list, _)| list);
            labels.extend(list.split(',').map(|label| label.trim().to_owned()));
        }
    }
    for (start, _) in legend.match_indices("{{") {
        if let Some((label, _)) = legend[start + 2..].split_once("}}") {
            labels.push(label.trim().to_owned());
        }
    }
    labels
}

/// Every problem of the dashboard's queries against the exported series.
fn check_queries(queries: &[(String, String)], catalogue: &Catalogue) -> Vec<String> {
    let mut problems = Vec::new();
    for (expr, legend) in queries {
        let mut known = BTreeSet::new();
        for (name, after) in metric_names(expr) {
            let Some(labels) = labels_of(catalogue, name) else {
                problems.push(format!("{name} is not exported (in `{expr}`)"));
                continue;
            };
            for label in selector_labels(after) {
                if !labels.contains(&label) {
                    problems.push(format!("{name} has no label {label:?} (in `{expr}`)"));
                }
            }
            known.extend(labels);
        }
        for label in grouping_labels(expr, legend) {
            if !known.contains(&label) {
                problems.push(format!(
                    "no series of `{expr}` has the label {label:?} (grouping or legend)"
                ));
            }
        }
    }
    problems
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read("deploy/grafana/redlimit.json")).expect("valid JSON")
}

async fn catalogue() -> Catalogue {
    let mut catalogue = middleware_series().await;
    catalogue.extend(facade_series(&read("client/src/observe.rs")));
    catalogue.extend(decision_series());
    catalogue
}

/// Notes the series a limiter registers through the `metrics` facade.
#[derive(Default)]
struct Registered(std::sync::Mutex<Catalogue>);

impl Registered {
    fn note(&self, key: &metrics::Key, kind: Kind) {
        let labels = key.labels().map(|label| label.key().to_owned()).collect();
        let mut series = self.0.lock().unwrap();
        series.insert(key.name().to_owned(), Series { kind, labels });
    }
}

impl metrics::Recorder for Registered {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        self.note(key, Kind::Counter);
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        self.note(key, Kind::Counter);
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        self.note(key, Kind::Histogram);
        metrics::Histogram::noop()
    }
}

/// The client's decision series: what a recorder receives while an in-memory limiter
/// allows and denies (on a thread of its own, where the recorder is installed).
fn decision_series() -> Catalogue {
    std::thread::spawn(|| {
        let recorder = Registered::default();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let limiter = RateLimiter::memory();
                let policy = redlimit::Policy::fixed(1, 60_000).unwrap();
                assert!(limiter.check("grafana", &policy).await.unwrap().allowed);
                assert!(!limiter.check("grafana", &policy).await.unwrap().allowed);
            });
        });
        recorder.0.into_inner().unwrap()
    })
    .join()
    .unwrap()
}

#[tokio::test]
async fn the_catalogue_holds_the_documented_series() {
    let catalogue = catalogue().await;
    let names: Vec<&str> = catalogue.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "redlimit_backend_errors_total",
            "redlimit_breaker_transitions_total",
            "redlimit_decision_seconds",
            "redlimit_decisions_total",
            "redlimit_http_allowed_total",
            "redlimit_http_backend_errors_total",
            "redlimit_http_decision_seconds",
            "redlimit_http_denied_total",
            "redlimit_http_shadow_denied_total",
        ]
    );
    let labels = |name: &str| catalogue[name].labels.iter().cloned().collect::<Vec<_>>();
    assert_eq!(labels("redlimit_http_denied_total"), ["rule"]);
    assert_eq!(labels("redlimit_http_decision_seconds"), ["rule"]);
    assert_eq!(
        labels("redlimit_decisions_total"),
        ["operation", "outcome", "source"]
    );
    assert_eq!(labels("redlimit_breaker_transitions_total"), ["to"]);
    assert_eq!(catalogue["redlimit_decision_seconds"].kind, Kind::Histogram);
}

#[tokio::test]
async fn every_dashboard_query_reads_exported_series_and_labels() {
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 15, "{queries:?}");
    let problems = check_queries(&queries, &catalogue().await);
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn the_dashboard_shows_rules_errors_latency_and_the_breaker() {
    let dashboard = dashboard();
    let used: BTreeSet<String> = queries(&dashboard)
        .iter()
        .flat_map(|(expr, _)| metric_names(expr).into_iter().map(|(n, _)| n.to_owned()))
        .collect();
    for name in [
        "redlimit_http_allowed_total",
        "redlimit_http_denied_total",
        "redlimit_http_backend_errors_total",
        "redlimit_http_decision_seconds_bucket",
        "redlimit_decisions_total",
        "redlimit_backend_errors_total",
        "redlimit_decision_seconds_bucket",
        "redlimit_breaker_transitions_total",
    ] {
        assert!(used.contains(name), "no panel reads {name}: {used:?}");
    }
    // Panels name their data source through the variable, so that an import anywhere
    // and the provisioned Prometheus of docker-compose.yml both work.
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "duplicate id");
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        }
    }
    assert_eq!(dashboard["uid"], "redlimit");
}

#[tokio::test]
async fn the_check_refuses_unknown_series_and_labels() {
    let catalogue = catalogue().await;
    let bad = |expr: &str, legend: &str| {
        check_queries(&[(expr.to_owned(), legend.to_owned())], &catalogue)
    };
    let problems = bad("rate(redlimit_http_requests_total[5m])", "");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("not exported"), "{problems:?}");
    let problems = bad(r#"redlimit_http_denied_total{route="x"}"#, "");
    assert!(problems[0].contains("no label \"route\""), "{problems:?}");
    let problems = bad("sum by (kind) (rate(redlimit_http_denied_total[5m]))", "");
    assert!(problems[0].contains("\"kind\""), "{problems:?}");
    let problems = bad("redlimit_http_denied_total", "{{source}}");
    assert!(problems[0].contains("\"source\""), "{problems:?}");
    // A counter has no _bucket; a histogram's _sum has no le.
    assert!(!bad("redlimit_http_denied_total_bucket", "").is_empty());
    assert!(!bad(r#"redlimit_http_decision_seconds_sum{le="1"}"#, "").is_empty());
    // What the dashboard does is accepted.
    let fine = bad(
        r#"histogram_quantile(0.99, sum by (rule, le) (rate(redlimit_http_decision_seconds_bucket{job=~"$job",rule=~"$rule"}[5m])))"#,
        "p99 {{rule}}",
    );
    assert_eq!(fine, Vec::<String>::new());
}
