//! Which rule covers a request (patterns with `*` and `**`, methods, first match wins,
//! the default rule), several limits on one rule (one all-or-nothing RL.ALL), and the
//! cost of a request (per rule, or computed per request).

use crate::support::{app, app_for, call, get, ip_key, layer, post, remaining};
use axum::Router;
use axum::http::{Method, StatusCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Every limit is named after its rule, so `RateLimit-Policy` says which rule decided.
const ROUTES: &str = r#"
    [[rules]]
    name = "reviews"
    path = "/api/items/*/reviews"
    methods = ["POST", "put"]
    limits = [{ name = "reviews", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]

    [[rules]]
    name = "items"
    path = "/api/items/**"
    limits = [{ name = "items", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]

    [[rules]]
    name = "login"
    path = "/api/login"
    methods = ["POST"]
    limits = [{ name = "login", algorithm = "sliding", limit = 10, window_ms = 60000 }]

    [[rules]]
    name = "one"
    path = "/files/*"
    limits = [{ name = "one", algorithm = "fixed", limit = 10, window_ms = 60000 }]

    [default]
    name = "default"
    limits = [{ name = "default", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]
"#;

#[tokio::test]
async fn the_first_rule_covering_path_and_method_decides_else_the_default_rule() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, ROUTES);
    let cases: [(Method, &str, &str); 14] = [
        (Method::POST, "/api/items/7/reviews", "reviews"),
        (Method::PUT, "/api/items/7/reviews", "reviews"),
        // The method does not match: the next rule covering the path.
        (Method::GET, "/api/items/7/reviews", "items"),
        // `*` is exactly one segment; `**` any rest, none included.
        (Method::POST, "/api/items/7/reviews/9", "items"),
        (Method::POST, "/api/items//reviews", "items"),
        (Method::GET, "/api/items", "items"),
        (Method::DELETE, "/api/items/7", "items"),
        (Method::POST, "/api/login", "login"),
        (Method::POST, "/api/login/", "login"),
        (Method::GET, "/api/login", "default"),
        (Method::POST, "/api/loginx", "default"),
        (Method::GET, "/files/a.txt", "one"),
        (Method::GET, "/files/a/b.txt", "default"),
        (Method::GET, "/anything/else?with=query", "default"),
    ];
    for (method, path, rule) in cases {
        let reply = call(method.clone(), path).send(&app).await;
        assert_eq!(reply.status, StatusCode::OK, "{method} {path}");
        assert_eq!(reply.policy_names(), [rule], "{method} {path}: {reply:?}");
    }
}

#[tokio::test]
async fn a_rule_counts_per_caller_across_the_paths_it_covers() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        [[rules]]
        name = "reviews"
        path = "/api/items/*/reviews"
        methods = ["POST"]
        limits = [{ name = "reviews", algorithm = "token_bucket", capacity = 3, refill_tokens = 1, refill_ms = 3600000 }]

        [[rules]]
        name = "items"
        path = "/api/items/**"
        limits = [{ name = "items", algorithm = "token_bucket", capacity = 3, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    let mut seen = Vec::new();
    for path in [
        "/api/items/1",
        "/api/items/2",
        "/api/items/3/x",
        "/api/items",
    ] {
        seen.push(get(path).send(&app).await.status.as_u16());
    }
    assert_eq!(seen, [200, 200, 200, 429]);
    // Other rules and other callers are untouched.
    assert_eq!(post("/api/items/1/reviews").send(&app).await.status, 200);
    assert_eq!(
        get("/api/items/1")
            .from("192.0.2.2")
            .send(&app)
            .await
            .status,
        200
    );
    assert_eq!(
        remaining(&server, &ip_key("items", "192.0.2.1", "items")),
        Some(0)
    );
}

/// A burst of 5 and at most 3 an hour (`RL.ALL` over both); or a burst of 2 and 10.
fn two_limits(burst: u64, hourly: u64) -> String {
    format!(
        r#"
        [[rules]]
        name = "api"
        path = "/api/**"
        limits = [
          {{ name = "burst", algorithm = "token_bucket", capacity = {burst}, refill_tokens = 1, refill_ms = 3600000 }},
          {{ name = "hourly", algorithm = "sliding", limit = {hourly}, window_ms = 3600000 }},
        ]
        "#
    )
}

#[tokio::test]
async fn several_limits_are_all_or_nothing() {
    let Some(server) = crate::support::server() else {
        return;
    };
    // The window denies first: the burst is not consumed by the refused request.
    let app = app_for(&server, &two_limits(5, 3));
    for left in [2, 1, 0] {
        let reply = get("/api/x").send(&app).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.remaining("hourly"), left);
        assert_eq!(reply.remaining("burst"), left + 2);
    }
    let burst_key = ip_key("api", "192.0.2.1", "burst");
    for _ in 0..3 {
        let refused = get("/api/x").send(&app).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.json()["violated-policies"],
            serde_json::json!(["hourly"])
        );
        assert_eq!(refused.remaining("burst"), 2, "{refused:?}");
        assert_eq!(refused.remaining("hourly"), 0);
        assert_eq!(remaining(&server, &burst_key), Some(2), "burst untouched");
    }

    // One round trip per request: six RL.ALL (under the scripts six EVALSHA, the first
    // refused with NOSCRIPT and sent again as EVAL, like the status reads above), nothing else.
    if !redlimit_test_support::test_engine().loads_module() {
        assert_eq!(calls(&server, "evalsha"), 6);
        return;
    }
    assert_eq!(calls(&server, "rl.all"), 6);
    assert_eq!(
        calls(&server, "rl.tokenbucket") + calls(&server, "rl.sliding"),
        0
    );

    // The burst denies first: the window is not consumed.
    let app = app_for(&server, &two_limits(2, 10).replace("\"api\"", "\"api2\""));
    let peer = "192.0.2.9";
    for _ in 0..2 {
        assert_eq!(get("/api/x").from(peer).send(&app).await.status, 200);
    }
    for _ in 0..3 {
        let refused = get("/api/x").from(peer).send(&app).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            refused.json()["violated-policies"],
            serde_json::json!(["burst"])
        );
        assert_eq!(refused.remaining("hourly"), 8, "{refused:?}");
    }
    let window =
        redlimit_test_support::status(&mut server.connection(), ip_key("api2", peer, "hourly"))
            .unwrap();
    assert_eq!(window.number("remaining") + window.number("allowed"), 8);
}

#[tokio::test]
async fn a_rule_can_cost_more_than_one() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        [[rules]]
        name = "export"
        path = "/export"
        cost = 3
        limits = [{ name = "units", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        let reply = get("/export").send(&app).await;
        seen.push((reply.status.as_u16(), reply.remaining("units")));
    }
    assert_eq!(seen, [(200, 7), (200, 4), (200, 1), (429, 1)]);
}

#[tokio::test]
async fn a_cost_function_prices_each_request() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(
        &server,
        r#"
        [[rules]]
        name = "batch"
        path = "/batch"
        cost = 2
        limits = [{ name = "units", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]

        [[rules]]
        name = "other"
        path = "/other"
        limits = [{ name = "other", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    )
    .cost(|parts, rule| {
        // Only the batch rule is priced by its `X-Items` header.
        (rule == "batch")
            .then(|| parts.headers.get("x-items")?.to_str().ok()?.parse().ok())
            .flatten()
    });
    let app = app(layer);
    let items = |n: &str| get("/batch").header("x-items", n);
    let r = items("4").send(&app).await;
    assert_eq!((r.status.as_u16(), r.remaining("units")), (200, 6));
    // No header: the rule's cost.
    let r = get("/batch").send(&app).await;
    assert_eq!((r.status.as_u16(), r.remaining("units")), (200, 4));
    // Zero only asks.
    let r = items("0").send(&app).await;
    assert_eq!((r.status.as_u16(), r.remaining("units")), (200, 4));
    // More than is left: refused, nothing spent, a retry time.
    let r = items("5").send(&app).await;
    assert_eq!((r.status.as_u16(), r.remaining("units")), (429, 4));
    assert!(r.header("retry-after").is_some());
    // More than the limit can ever allow: refused without a retry time.
    let r = items("11").send(&app).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), None, "{r:?}");
    assert_eq!(r.json()["retry-after"], serde_json::Value::Null);
    // Beyond what any limit can count (2^62): still refused, never served unlimited
    // (the cost may come from the client, as here).
    for huge in ["4611686018427387905", "18446744073709551615"] {
        let r = items(huge).send(&app).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{huge}: {r:?}");
        assert_eq!(r.header("retry-after"), None, "{huge}: {r:?}");
    }
    let r = items("4").send(&app).await;
    assert_eq!((r.status.as_u16(), r.remaining("units")), (200, 0));
    // Another rule: the function says None, the rule's cost (1) applies.
    let r = get("/other").header("x-items", "9").send(&app).await;
    assert_eq!(r.remaining("other"), 9);
}

/// `calls` of `command` in `INFO commandstats`.
fn calls(server: &redlimit_test_support::Server, command: &str) -> u64 {
    redlimit_test_support::info_value(
        &mut server.connection(),
        "commandstats",
        &format!("cmdstat_{command}"),
    )
    .and_then(|stats| {
        stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls=").map(|n| n.parse().unwrap()))
    })
    .unwrap_or(0)
}

#[tokio::test]
async fn a_get_rule_covers_head_which_runs_the_same_handler() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(
        &server,
        r#"
        [[rules]]
        name = "report"
        path = "/report"
        methods = ["GET"]
        limits = [{ name = "report", algorithm = "token_bucket", capacity = 2, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&runs);
    let handler = move || async move {
        counted.fetch_add(1, Ordering::Relaxed);
        "an expensive report"
    };
    let app = Router::new()
        .route(
            "/report",
            axum::routing::get(handler).post(|| async { "posted" }),
        )
        .layer(layer);
    // axum answers HEAD with the GET handler (the body dropped): the same work, and so
    // the same limit.
    let head = call(Method::HEAD, "/report").send(&app).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(runs.load(Ordering::Relaxed), 1, "HEAD ran the GET handler");
    assert_eq!(head.remaining("report"), 1, "{head:?}");
    assert_eq!(get("/report").send(&app).await.remaining("report"), 0);
    assert_eq!(
        call(Method::HEAD, "/report").send(&app).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(runs.load(Ordering::Relaxed), 2);
    // Other methods are not covered.
    let post = post("/report").send(&app).await;
    assert!(!post.has_rate_limit_headers(), "{post:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_exactly_the_capacity() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        [[rules]]
        name = "api"
        path = "/api/**"
        limits = [{ name = "burst", algorithm = "token_bucket", capacity = 50, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    // 200 at once through clones of the app (as a server's connections are): one
    // budget in Redis, not one per clone.
    let requests: Vec<_> = (0..200)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get("/api/x").send(&app).await.status.as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((ok, refused), (50, 150));
}

#[tokio::test]
async fn a_pattern_with_a_trailing_slash_names_the_same_path() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        [[rules]]
        name = "login"
        path = "/api/login/"
        limits = [{ name = "login", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]

        [[rules]]
        name = "items"
        path = "/api/items/*/"
        limits = [{ name = "items", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    for (path, rule) in [
        ("/api/login", "login"),
        ("/api/login/", "login"),
        ("/api/items/7", "items"),
        ("/api/items/7/", "items"),
    ] {
        let reply = post(path).send(&app).await;
        assert_eq!(reply.policy_names(), [rule], "{path}: {reply:?}");
    }
}

#[tokio::test]
async fn a_refused_request_of_several_units_spends_nothing_on_any_limit() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        [[rules]]
        name = "api"
        path = "/api/**"
        cost = 3
        limits = [
          { name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 },
          { name = "hourly", algorithm = "sliding", limit = 4, window_ms = 3600000 },
        ]
        "#,
    );
    let first = get("/api/x").send(&app).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        (first.remaining("burst"), first.remaining("hourly")),
        (7, 1)
    );
    let refused = get("/api/x").send(&app).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.json()["violated-policies"],
        serde_json::json!(["hourly"])
    );
    assert_eq!(
        (refused.remaining("burst"), refused.remaining("hourly")),
        (7, 1),
        "{refused:?}"
    );
    assert_eq!(
        remaining(&server, &ip_key("api", "192.0.2.1", "burst")),
        Some(7)
    );
}

#[tokio::test]
async fn a_layer_inside_a_nested_router_matches_full_paths() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = crate::support::layer(
        &server,
        r#"
        [[rules]]
        name = "nested"
        path = "/v1/items"
        limits = [{ name = "burst", algorithm = "fixed", limit = 2, window_ms = 60000 }]
        "#,
    );
    let inner = axum::Router::new()
        .route("/items", axum::routing::get(|| async { "items" }))
        .layer(layer);
    let app = axum::Router::new().nest("/v1", inner);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            get("/v1/items")
                .from("192.0.2.70")
                .send(&app)
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "the rule names the path the client sent"
    );
}
