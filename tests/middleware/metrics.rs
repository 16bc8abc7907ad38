//! The Prometheus exposition: per-rule allowed, denied, shadow-denied and backend-error
//! counters, and the decision-latency histogram, served on `/metrics`.

use crate::support::{app_for, get, ip_key, sample};
use axum::http::StatusCode;

#[tokio::test]
async fn prometheus_text_has_every_counter_per_rule_and_the_latency_histogram() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        [[rules]]
        name = "hello"
        path = "/hello"
        limits = [{ name = "burst", algorithm = "token_bucket", capacity = 3, refill_tokens = 1, refill_ms = 3600000 }]

        [[rules]]
        name = "watched"
        path = "/watched"
        shadow = true
        limits = [{ name = "one", algorithm = "sliding", limit = 1, window_ms = 3600000 }]

        [[rules]]
        name = "broken"
        path = "/broken"
        limits = [{ name = "burst", algorithm = "token_bucket", capacity = 3, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    // The server refuses to decide on a key that holds a string (WRONGTYPE): a backend
    // error that is not an outage, so no failure policy answers and the request is
    // served.
    let _: () = redis::cmd("SET")
        .arg(ip_key("broken", "192.0.2.1", "burst"))
        .arg("not a limiter")
        .query(&mut server.connection())
        .unwrap();
    for _ in 0..5 {
        get("/hello").send(&app).await;
    }
    for _ in 0..4 {
        get("/watched").send(&app).await;
    }
    for _ in 0..2 {
        let reply = get("/broken").send(&app).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(!reply.has_rate_limit_headers(), "{reply:?}");
    }
    let reply = get("/metrics").send(&app).await;
    assert_eq!(reply.status, StatusCode::OK);
    let text = reply.body;
    println!("{text}");
    let expected = [
        ("hello", [3.0, 2.0, 0.0, 0.0]),
        ("watched", [1.0, 0.0, 3.0, 0.0]),
        ("broken", [0.0, 0.0, 0.0, 2.0]),
    ];
    for (rule, [allowed, denied, shadow, errors]) in expected {
        assert_eq!(
            sample(&text, "redlimit_http_allowed_total", rule),
            allowed,
            "{rule}"
        );
        assert_eq!(
            sample(&text, "redlimit_http_denied_total", rule),
            denied,
            "{rule}"
        );
        assert_eq!(
            sample(&text, "redlimit_http_shadow_denied_total", rule),
            shadow,
            "{rule}"
        );
        assert_eq!(
            sample(&text, "redlimit_http_backend_errors_total", rule),
            errors,
            "{rule}"
        );
    }
    for name in [
        "redlimit_http_allowed_total",
        "redlimit_http_denied_total",
        "redlimit_http_shadow_denied_total",
        "redlimit_http_backend_errors_total",
    ] {
        assert!(text.contains(&format!("# TYPE {name} counter\n")), "{name}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name}");
    }
    let histogram = "redlimit_http_decision_seconds";
    assert!(text.contains(&format!("# TYPE {histogram} histogram\n")));
    for (rule, decisions) in [("hello", 5.0), ("watched", 4.0)] {
        // Cumulative buckets, ending at +Inf with every decision.
        let buckets: Vec<(String, f64)> = text
            .lines()
            .filter_map(|line| {
                let rest =
                    line.strip_prefix(&format!("{histogram}_bucket{{rule=\"{rule}\",le=\""))?;
                let (le, value) = rest.split_once("\"} ")?;
                Some((le.to_owned(), value.parse().unwrap()))
            })
            .collect();
        assert!(buckets.len() >= 2, "{rule}: {buckets:?}");
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "{rule}: cumulative {buckets:?}"
        );
        assert_eq!(buckets.last().unwrap(), &("+Inf".to_owned(), decisions));
        assert_eq!(
            sample(&text, &format!("{histogram}_count"), rule),
            decisions
        );
        let sum = sample(&text, &format!("{histogram}_sum"), rule);
        assert!(sum > 0.0 && sum < decisions * 2.0, "{rule}: sum {sum}");
    }
    // Errors that left no decision are not timed.
    let no_timings = format!("{histogram}_count{{rule=\"broken\"}}");
    assert!(
        !text.contains(&no_timings)
            || sample(&text, &format!("{histogram}_count"), "broken") == 0.0
    );
}

/// One exporter for everything: with `PrometheusExporter` installed as the `metrics`
/// recorder, `/metrics` serves the app's own series, the client's and the layer's, each
/// name described once (no duplicate `# HELP`/`# TYPE` blocks).
#[tokio::test]
async fn one_exporter_serves_the_apps_the_clients_and_the_layers_series() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let exporter = redlimit::http::PrometheusExporter::default();
    // Each test runs in its own process under nextest; under `cargo test` another
    // test may not have installed one (none does).
    exporter.install().unwrap();
    let layer = crate::support::layer(
        &server,
        r#"
        [[rules]]
        name = "hello"
        path = "/hello"
        limits = "2/minute"
        "#,
    );
    let app = axum::Router::new()
        .route(
            "/hello",
            axum::routing::get(|| async {
                metrics::counter!("app_greetings_total").increment(1);
                "hello"
            }),
        )
        .route("/metrics", axum::routing::get(exporter.handler()))
        .layer(layer);
    for _ in 0..3 {
        get("/hello").send(&app).await;
    }
    let reply = get("/metrics").send(&app).await;
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .must("content-type")
            .starts_with("text/plain; version=0.0.4"),
        "{reply:?}"
    );
    let text = reply.body;
    println!("{text}");
    assert!(text.contains("\napp_greetings_total 2\n"), "{text}");
    assert_eq!(sample(&text, "redlimit_http_allowed_total", "hello"), 2.0);
    assert_eq!(sample(&text, "redlimit_http_denied_total", "hello"), 1.0);
    assert!(
        text.contains("redlimit_http_decision_seconds_count{rule=\"hello\"} 3\n"),
        "{text}"
    );
    // The client's own series (feature `metrics`), through the same recorder.
    assert!(
        text.contains(
            "redlimit_decisions_total{operation=\"check\",outcome=\"allowed\",source=\"server\"} 2\n"
        ),
        "{text}"
    );
    for name in [
        "redlimit_http_allowed_total",
        "redlimit_http_decision_seconds",
        "redlimit_decisions_total",
    ] {
        let typed = format!("# TYPE {name} ");
        assert_eq!(text.matches(&typed).count(), 1, "{name}");
    }
}
