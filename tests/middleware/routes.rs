//! Limits attached to routes in code (`route_layer(layer.limit(..)?.per_ip())`): they
//! share the app-wide layer's limiter, metrics and callers, and compose with its
//! configured rules.

use crate::support::{get, layer, post};
use axum::Router;
use axum::routing::{get as get_route, post as post_route};

const GLOBAL: &str = r#"
[[rules]]
name = "global"
path = "/**"
limits = "100/minute"
"#;

#[tokio::test]
async fn a_route_limit_composes_with_the_configured_rules() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, GLOBAL);
    let metrics = layer.metrics();
    let login = layer.limit("login", "3/minute; 10/hour").unwrap().per_ip();
    let app = Router::new()
        .route("/login", post_route(|| async { "welcome" }))
        .route_layer(login)
        .route("/other", get_route(|| async { "other" }))
        .layer(layer.clone());

    let mut replies = Vec::new();
    for _ in 0..4 {
        replies.push(post("/login").send(&app).await);
    }
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    // The route's limits and the global rule's, in one list (the inner layer's first).
    assert_eq!(
        replies[0].must("ratelimit-policy"),
        r#""3/minute";q=3;w=60, "10/hour";q=10;w=3600, "100/minute";q=100;w=60"#
    );
    assert_eq!(
        replies[3].json()["violated-policies"],
        serde_json::json!(["3/minute"])
    );
    // The global rule counted the four (the outer layer decides first), the route's
    // own limits the three it served.
    assert_eq!(replies[3].remaining("100/minute"), 96, "{:?}", replies[3]);
    assert_eq!(replies[3].remaining("10/hour"), 7, "{:?}", replies[3]);
    // Another route: the global rule only; another caller: its own counters.
    let other = get("/other").send(&app).await;
    assert_eq!(other.policy_names(), ["100/minute"]);
    assert_eq!(
        post("/login").from("192.0.2.2").send(&app).await.status,
        200
    );
    // One metrics handle for both.
    let text = metrics.render();
    let sample = |what: &str, rule: &str| crate::support::sample(&text, what, rule);
    assert_eq!(sample("redlimit_http_denied_total", "login"), 1.0);
    assert_eq!(sample("redlimit_http_allowed_total", "login"), 4.0);
    assert_eq!(sample("redlimit_http_allowed_total", "global"), 6.0);
    let keys = crate::support::keys(&server);
    assert!(
        keys.contains(&"rl:{login:ip:192.0.2.1}:3/minute".to_owned()),
        "{keys:?}"
    );

    // Bad limits are named; a configured rule's name is refused (shared counters).
    let error = layer.limit("global", "1/second").unwrap_err();
    assert_eq!(error.field, r#"limit("global").name"#, "{error}");
    let error = layer.limit("x", "5 per fortnight").unwrap_err();
    assert_eq!(error.field, r#"limit("x").rates[0].rate"#, "{error}");
    let error = layer.limit("x", " ; ").unwrap_err();
    assert_eq!(error.field, r#"limit("x").rates"#, "{error}");
    let error = layer.limit("a{b", "1/second").unwrap_err();
    assert_eq!(error.field, r#"limit("a{b").name"#, "{error}");
}

/// A login route that counts failed logins only: peeked before, counted after a 401.
#[tokio::test]
async fn count_when_counts_failed_logins_only() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, GLOBAL);
    let failures = layer
        .limit("login", "3/minute")
        .unwrap()
        .count_when(|status| status == axum::http::StatusCode::UNAUTHORIZED);
    let app = Router::new()
        .route(
            "/login",
            post_route(|headers: axum::http::HeaderMap| async move {
                if headers.get("x-password").is_some_and(|p| p == "right") {
                    (axum::http::StatusCode::OK, "welcome")
                } else {
                    (axum::http::StatusCode::UNAUTHORIZED, "no")
                }
            }),
        )
        .route_layer(failures)
        .layer(layer);
    let key = crate::support::ip_key("login", "192.0.2.1", "3/minute");
    // Counted after the response, off its path: wait for the count to land.
    let settled = |expected: i64| {
        let server = &server;
        let key = key.clone();
        async move {
            for _ in 0..200 {
                if crate::support::remaining(server, &key).unwrap_or(3) == expected {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            panic!("{key} never reached {expected}");
        }
    };
    // Successful logins: not counted; the headers say the quota is whole.
    for _ in 0..5 {
        let ok = post("/login")
            .header("x-password", "right")
            .send(&app)
            .await;
        assert_eq!(ok.status, 200);
        assert_eq!(
            (
                ok.remaining("3/minute"),
                ok.item("ratelimit", "3/minute", "t")
            ),
            (3, 0)
        );
    }
    assert_eq!(
        crate::support::remaining(&server, &key),
        None,
        "nothing counted"
    );
    // Failed logins: counted, and the headers count them.
    for left in [2, 1, 0] {
        let failed = post("/login").send(&app).await;
        assert_eq!(failed.status, 401);
        assert_eq!(failed.remaining("3/minute"), left as u64);
        settled(left).await;
    }
    // Over the limit: refused before the handler, failed or not, and nothing counted.
    let refused = post("/login").send(&app).await;
    assert_eq!(refused.status, 429);
    let refused = post("/login")
        .header("x-password", "right")
        .send(&app)
        .await;
    assert_eq!(refused.status, 429);
    assert_eq!(crate::support::remaining(&server, &key), Some(0));
}

/// `count_when` in the file: the same, for a configured rule.
#[tokio::test]
async fn count_when_in_the_file_counts_the_listed_statuses_only() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(
        &server,
        r#"
        [[rules]]
        name = "login"
        path = "/login"
        limits = "2/minute"
        count_when = ["4xx", "503"]
        "#,
    );
    let app = Router::new()
        .route(
            "/login",
            post_route(|headers: axum::http::HeaderMap| async move {
                if headers.get("x-password").is_some_and(|p| p == "right") {
                    (axum::http::StatusCode::OK, "welcome")
                } else {
                    (axum::http::StatusCode::FORBIDDEN, "no")
                }
            }),
        )
        .layer(layer);
    let key = crate::support::ip_key("login", "192.0.2.1", "2/minute");
    for _ in 0..3 {
        let ok = post("/login")
            .header("x-password", "right")
            .send(&app)
            .await;
        assert_eq!((ok.status.as_u16(), ok.remaining("2/minute")), (200, 2));
    }
    for left in [1, 0] {
        let failed = post("/login").send(&app).await;
        assert_eq!(
            (failed.status.as_u16(), failed.remaining("2/minute")),
            (403, left)
        );
        for _ in 0..200 {
            if crate::support::remaining(&server, &key) == Some(left as i64) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(crate::support::remaining(&server, &key), Some(left as i64));
    }
    assert_eq!(post("/login").send(&app).await.status, 429);
    // Bad statuses are named.
    let error = redlimit::http::Config::from_toml(
        "[[rules]]\nname = \"x\"\npath = \"/x\"\nlimits = \"1/second\"\ncount_when = [\"4xx\", \"600\"]\n",
    )
    .unwrap_err();
    assert_eq!(error.field, "rules[0].count_when[1]", "{error}");
}

/// Route limits of several callers (`with`) and with penalties (`penalty`).
#[tokio::test]
async fn route_limits_of_several_callers_with_a_penalty() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, GLOBAL);
    let both = layer
        .limit("both", "3/minute")
        .unwrap()
        .with("5/minute", redlimit::http::KeyKind::ApiKey)
        .unwrap()
        .penalty(
            1,
            std::time::Duration::from_secs(90),
            std::time::Duration::from_secs(120),
        );
    assert!(
        layer
            .limit("x", "3/minute")
            .unwrap()
            .with("3 per minute", redlimit::http::KeyKind::User)
            .is_err(),
        "one name twice"
    );
    let app = Router::new()
        .route("/both", get_route(|| async { "both" }))
        .route_layer(both)
        .layer(layer);
    let call = || get("/both").header("x-api-key", "k-1");
    let mut statuses = Vec::new();
    let mut replies = Vec::new();
    for _ in 0..5 {
        let reply = call().send(&app).await;
        statuses.push(reply.status.as_u16());
        replies.push(reply);
    }
    // Three by the address's limit, then its refusal starts a 90 s block (longer than
    // the limit's 60 s wait, so Retry-After says 90).
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(replies[0].remaining("5/minute"), 4, "{:?}", replies[0]);
    assert_eq!(replies[3].must("retry-after"), "90", "{:?}", replies[3]);
    assert_eq!(
        replies[4].json()["violated-policies"],
        serde_json::json!(["penalty"])
    );
    // The key's limit is its own: keyed by the API key, not the address.
    let keys = crate::support::keys(&server);
    assert!(
        keys.iter()
            .any(|k| k.starts_with("rl:{both:key:") && k.ends_with(":5/minute")),
        "{keys:?}"
    );
}
