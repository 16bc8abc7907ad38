//! What callers see: 429 with `Retry-After` in whole seconds rounded up and an RFC 9457
//! problem body (or the application's own rejection), and the rate-limit headers on
//! every response of a limited route, in each style; none elsewhere.

use crate::support::{Reply, app, app_for, get, ip_key, layer};
use axum::body::Body;
use axum::http::{Response, StatusCode};
use redlimit::http::QUOTA_EXCEEDED;
use redlimit_test_support::Server;
use std::time::Instant;

/// A bucket of 2 refilling one token every 90.9 s (so the wait is 90.x s, never whole),
/// under header style `headers`.
fn bucket(headers: &str) -> String {
    format!(
        r#"
        headers = "{headers}"

        [[rules]]
        name = "api"
        path = "/api/**"
        limits = [{{ name = "burst", algorithm = "token_bucket", capacity = 2, refill_tokens = 1, refill_ms = 90900 }}]
        "#
    )
}

/// The retry time `RL.STATUS` reports now, in milliseconds.
fn retry_ms(server: &Server) -> i64 {
    redlimit_test_support::status(
        &mut server.connection(),
        ip_key("api", "192.0.2.1", "burst"),
    )
    .unwrap()
    .number("retry_after_ms")
}

#[tokio::test]
async fn over_the_limit_a_429_says_when_to_retry_in_whole_seconds_rounded_up() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &bucket("draft11"));
    let (logs, _guard) = crate::support::capture_logs();
    let started = Instant::now();
    for _ in 0..2 {
        assert_eq!(get("/api/x").send(&app).await.status, StatusCode::OK);
    }
    let refused = get("/api/x").send(&app).await;
    let elapsed_ms = started.elapsed().as_millis();
    let after_ms = retry_ms(&server);
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.must("retry-after").parse().unwrap();
    println!(
        "Retry-After {retry} s; RL.STATUS then {after_ms} ms; {elapsed_ms} ms since the first token"
    );
    // The first token comes back 90.9 s after it was spent: 91 s, rounded up (90 only
    // if this machine took over 0.9 s between the two requests).
    let earliest = (90_900 - elapsed_ms as u64).div_ceil(1000);
    assert!((earliest..=91).contains(&retry), "{retry}");
    assert!(retry * 1000 >= after_ms as u64, "never rounded down");

    assert_eq!(refused.must("content-type"), "application/problem+json");
    let body = refused.json();
    assert_eq!(body["type"], QUOTA_EXCEEDED);
    assert_eq!(
        body["type"],
        "https://iana.org/assignments/http-problem-types#quota-exceeded"
    );
    assert_eq!(body["status"], 429);
    assert_eq!(body["violated-policies"], serde_json::json!(["burst"]));
    assert_eq!(body["retry-after"], retry);
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    // The 429 carries the rate-limit headers too; `t` is the wait, rounded up.
    assert_eq!(refused.remaining("burst"), 0);
    assert_eq!(refused.item("ratelimit", "burst", "t"), retry);
    // The refusal is logged with the rule, the violated limits and the wait.
    let logged = logs.lines_with("429");
    assert_eq!(logged.len(), 1, "{}", logs.text());
    for part in ["rule=api", "burst", "retry_after_ms="] {
        assert!(logged[0].contains(part), "{part}: {}", logged[0]);
    }
}

#[tokio::test]
async fn the_application_can_answer_over_limit_requests_its_own_way() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, &bucket("both")).rejection(|limited| {
        let body = serde_json::json!({
            "error": "slow down",
            "rule": limited.rule,
            "limits": limited.violated_policies,
        });
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
    });
    let app = app(layer);
    for _ in 0..2 {
        get("/api/x").send(&app).await;
    }
    let refused = get("/api/x").send(&app).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refused.json(),
        serde_json::json!({ "error": "slow down", "rule": "api", "limits": ["burst"] })
    );
    // The middleware still adds Retry-After and the rate-limit headers.
    assert!(refused.header("retry-after").is_some(), "{refused:?}");
    assert_eq!(refused.must("x-ratelimit-remaining"), "0");
    assert_eq!(refused.remaining("burst"), 0);
}

/// The headers of two allowed requests and one refused, under `style`.
async fn three(style: &str) -> Vec<Reply> {
    let server = crate::support::server().unwrap();
    let app = app_for(&server, &bucket(style));
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(get("/api/x").send(&app).await);
    }
    assert_eq!(
        replies
            .iter()
            .map(|r| r.status.as_u16())
            .collect::<Vec<_>>(),
        [200, 200, 429]
    );
    replies
}

const DRAFT_11: [&str; 2] = ["ratelimit-policy", "ratelimit"];
const LEGACY: [&str; 3] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
];

#[tokio::test]
async fn draft_11_headers_by_default() {
    if crate::support::binary().is_none() {
        return;
    }
    let default_style = {
        let server = crate::support::server().unwrap();
        let app = app_for(
            &server,
            &bucket("draft11").replace("headers = \"draft11\"", ""),
        );
        get("/api/x").send(&app).await
    };
    assert!(
        default_style.header("ratelimit").is_some(),
        "{default_style:?}"
    );
    for (i, reply) in three("draft11").await.iter().enumerate() {
        for name in LEGACY {
            assert_eq!(reply.header(name), None, "{reply:?}");
        }
        // w: 2 tokens take 181.8 s to refill, rounded up.
        assert_eq!(reply.must("ratelimit-policy"), r#""burst";q=2;w=182"#);
        assert_eq!(reply.remaining("burst"), [1, 0, 0][i]);
        let t = reply.item("ratelimit", "burst", "t");
        assert!((1..=182).contains(&t), "{reply:?}");
    }
}

#[tokio::test]
async fn legacy_headers_when_configured() {
    if crate::support::binary().is_none() {
        return;
    }
    for (i, reply) in three("legacy").await.iter().enumerate() {
        for name in DRAFT_11 {
            assert_eq!(reply.header(name), None, "{reply:?}");
        }
        assert_eq!(reply.must("x-ratelimit-limit"), "2");
        assert_eq!(reply.must("x-ratelimit-remaining"), ["1", "0", "0"][i]);
        let reset: u64 = reply.must("x-ratelimit-reset").parse().unwrap();
        assert!((1..=182).contains(&reset), "{reply:?}");
    }
}

#[tokio::test]
async fn both_header_styles_at_once_or_none() {
    if crate::support::binary().is_none() {
        return;
    }
    for reply in three("both").await {
        for name in DRAFT_11.iter().chain(&LEGACY) {
            assert!(reply.header(name).is_some(), "{name}: {reply:?}");
        }
    }
    let none = three("none").await;
    for reply in &none {
        for name in DRAFT_11.iter().chain(&LEGACY) {
            assert_eq!(reply.header(name), None, "{reply:?}");
        }
    }
    assert!(
        none[2].header("retry-after").is_some(),
        "a 429 still says when"
    );
}

#[tokio::test]
async fn routes_without_a_rule_and_exempt_paths_carry_no_headers() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &bucket("both"));
    for path in ["/", "/elsewhere", "/apix", "/health", "/metrics"] {
        let reply = get(path).send(&app).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(!reply.has_rate_limit_headers(), "{path}: {reply:?}");
    }
    assert!(crate::support::keys(&server).is_empty());
}

#[tokio::test]
async fn policies_and_windows_of_each_algorithm_in_draft_11() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        [[rules]]
        name = "mixed"
        path = "/api/**"
        limits = [
          { name = "tb", algorithm = "token_bucket", capacity = 100, refill_tokens = 10, refill_ms = 1000 },
          { name = "sliding", algorithm = "sliding", limit = 50, window_ms = 60000 },
          { name = "approx", algorithm = "sliding_approx", limit = 40, window_ms = 1500 },
          { name = "fixed", algorithm = "fixed", limit = 1000, window_ms = 3600000 },
        ]

        [[rules]]
        name = "gcra"
        path = "/gcra"
        limits = [{ name = "cell", algorithm = "throttle", max_burst = 4, count_per_period = 10, period_s = 60 }]
        "#,
    );
    let reply = get("/api/x").send(&app).await;
    assert_eq!(
        reply.must("ratelimit-policy"),
        r#""tb";q=100;w=10, "sliding";q=50;w=60, "approx";q=40;w=2, "fixed";q=1000;w=3600"#
    );
    assert_eq!(
        [
            reply.remaining("tb"),
            reply.remaining("sliding"),
            reply.remaining("approx"),
            reply.remaining("fixed")
        ],
        [99, 49, 39, 999]
    );
    let cell = get("/gcra").send(&app).await;
    assert_eq!(cell.status, StatusCode::OK);
    assert_eq!(cell.quota("cell"), 5, "{cell:?}");
}

#[tokio::test]
async fn legacy_headers_describe_the_limit_closest_to_exhaustion() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        headers = "both"

        [[rules]]
        name = "api"
        path = "/api/**"
        limits = [
          { name = "burst", algorithm = "token_bucket", capacity = 5, refill_tokens = 1, refill_ms = 3600000 },
          { name = "hourly", algorithm = "sliding", limit = 3, window_ms = 3600000 },
        ]
        "#,
    );
    let first = get("/api/x").send(&app).await;
    assert_eq!(
        (
            first.must("x-ratelimit-limit"),
            first.must("x-ratelimit-remaining")
        ),
        ("3", "2")
    );
    assert_eq!(
        (first.remaining("burst"), first.remaining("hourly")),
        (4, 2)
    );
    for _ in 0..2 {
        get("/api/x").send(&app).await;
    }
    let refused = get("/api/x").send(&app).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.must("x-ratelimit-remaining"), "0");
    // Reset and Retry-After agree: the hourly window is what must pass.
    assert_eq!(
        refused.must("x-ratelimit-reset"),
        refused.must("retry-after"),
        "{refused:?}"
    );
}

#[tokio::test]
async fn denials_are_logged_as_structured_events() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &bucket("draft11"));
    let (logs, _guard) = crate::support::capture_json_logs();
    for _ in 0..3 {
        get("/api/x").send(&app).await;
    }
    let events: Vec<serde_json::Value> = logs
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .filter(|event: &serde_json::Value| event["target"] == "redlimit::http::decision")
        .collect();
    assert_eq!(events.len(), 1, "one denial, one event: {events:?}");
    let fields = &events[0]["fields"];
    assert_eq!(events[0]["level"], "INFO");
    assert_eq!(fields["rule"], "api");
    assert_eq!(fields["violated"], r#"["burst"]"#);
    let retry = fields["retry_after_ms"].as_u64().unwrap();
    assert!((80_000..=90_900).contains(&retry), "{retry}");
}

#[tokio::test]
async fn stacked_layers_report_every_policy() {
    let Some(server) = crate::support::server() else {
        return;
    };
    // A global limit per IP around the whole app, and a route's own limit inside it:
    // one request, two policies (a layer's rules are exclusive, so this takes two).
    let global = layer(
        &server,
        r#"
        headers = "both"
        [[rules]]
        name = "global"
        path = "/**"
        limits = [{ name = "global", algorithm = "sliding", limit = 100, window_ms = 60000 }]
        "#,
    );
    let route = layer(
        &server,
        r#"
        headers = "both"
        [[rules]]
        name = "hello"
        path = "/api/hello"
        limits = [{ name = "hello", algorithm = "token_bucket", capacity = 2, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    let app = axum::Router::new()
        .route(
            "/api/hello",
            axum::routing::get(|| async { "hello" }).layer(route),
        )
        .fallback(|| async { "ok" })
        .layer(global);
    let first = get("/api/hello").send(&app).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.policy_names(), ["hello", "global"], "{first:?}");
    assert_eq!(
        (first.remaining("hello"), first.remaining("global")),
        (1, 99)
    );
    // The legacy trio describes the limit closest to exhaustion.
    assert_eq!(first.must("x-ratelimit-limit"), "2");
    assert_eq!(first.must("x-ratelimit-remaining"), "1");
    get("/api/hello").send(&app).await;
    let refused = get("/api/hello").send(&app).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.policy_names(), ["hello", "global"], "{refused:?}");
    assert_eq!(refused.must("x-ratelimit-remaining"), "0");
    // Elsewhere only the global policy.
    let other = get("/other").send(&app).await;
    assert_eq!(other.policy_names(), ["global"]);
}
