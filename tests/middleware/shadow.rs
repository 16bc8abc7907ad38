//! Shadow mode, for the whole configuration or one rule: over-limit requests are
//! decided, counted and logged, and served.

use crate::support::{app, capture_logs, counter, get, layer};
use axum::http::StatusCode;

/// Two rules of two requests each; `shadow` is the top of the file.
fn two_rules(shadow: &str, watched_shadow: bool) -> String {
    format!(
        r#"
        {shadow}

        [[rules]]
        name = "watched"
        path = "/watched"
        shadow = {watched_shadow}
        limits = [{{ name = "two", algorithm = "token_bucket", capacity = 2, refill_tokens = 1, refill_ms = 3600000 }}]

        [[rules]]
        name = "enforced"
        path = "/enforced"
        limits = [{{ name = "two", algorithm = "sliding", limit = 2, window_ms = 3600000 }}]
        "#
    )
}

async fn five(app: &axum::Router, path: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..5 {
        out.push(get(path).send(app).await.status.as_u16());
    }
    out
}

#[tokio::test]
async fn global_shadow_mode_serves_everything_and_counts_the_excess() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, &two_rules("shadow = true", false));
    let metrics = layer.metrics();
    let app = app(layer);
    let (logs, _guard) = capture_logs();
    for rule in ["watched", "enforced"] {
        assert_eq!(five(&app, &format!("/{rule}")).await, [200; 5], "{rule}");
        assert_eq!(counter(&metrics, "allowed", rule), 2, "{rule}");
        assert_eq!(counter(&metrics, "shadow_denied", rule), 3, "{rule}");
        assert_eq!(counter(&metrics, "denied", rule), 0, "{rule}");
    }
    let logged = logs.lines_with("shadow");
    assert_eq!(
        logged.len(),
        6,
        "one log line per shadow denial:\n{}",
        logs.text()
    );
    assert!(logs.lines_with("429").is_empty(), "{}", logs.text());
}

#[tokio::test]
async fn a_shadow_rule_serves_while_the_others_refuse() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, &two_rules("", true));
    let metrics = layer.metrics();
    let app = app(layer);
    assert_eq!(five(&app, "/watched").await, [200; 5]);
    assert_eq!(five(&app, "/enforced").await, [200, 200, 429, 429, 429]);
    assert_eq!(counter(&metrics, "shadow_denied", "watched"), 3);
    assert_eq!(counter(&metrics, "denied", "watched"), 0);
    assert_eq!(counter(&metrics, "shadow_denied", "enforced"), 0);
    assert_eq!(counter(&metrics, "denied", "enforced"), 3);
    // Shadow decisions count like real ones: the bucket is empty, not overdrawn.
    assert_eq!(
        crate::support::remaining(
            &server,
            &crate::support::ip_key("watched", "192.0.2.1", "two")
        ),
        Some(0)
    );
    let refused = get("/enforced").send(&app).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
}
