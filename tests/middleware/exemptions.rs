//! Who is never limited: `/health` and `/metrics` by default (or the configured paths),
//! IPs and CIDRs (the resolved client, never a claimed one), verified users, API keys.

use crate::support::{app_for, get, keys, now_s, token};
use axum::http::StatusCode;
use serde_json::json;

/// Everything is limited to one request per caller, unless exempt.
fn everything(exempt: &str) -> String {
    format!(
        r#"
        [identity]
        trusted_proxies = ["10.0.0.0/8"]
        [identity.jwt]
        secret = "middleware-test-secret-0123456789"

        [exempt]
        {exempt}

        [[rules]]
        name = "all"
        path = "/**"
        key = "user"
        limits = [{{ name = "one", algorithm = "token_bucket", capacity = 1, refill_tokens = 1, refill_ms = 3600000 }}]
        "#
    )
}

/// The statuses of `n` identical requests.
async fn statuses(
    app: &axum::Router,
    n: usize,
    call: impl Fn() -> crate::support::Call,
) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(call().send(app).await.status.as_u16());
    }
    out
}

/// Three requests all served, none with rate-limit headers.
async fn assert_exempt(app: &axum::Router, call: impl Fn() -> crate::support::Call, what: &str) {
    for _ in 0..3 {
        let reply = call().send(app).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {reply:?}");
        assert!(!reply.has_rate_limit_headers(), "{what}: {reply:?}");
    }
}

#[tokio::test]
async fn health_and_metrics_are_exempt_by_default() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &everything(""));
    assert_eq!(statuses(&app, 2, || get("/x")).await, [200, 429]);
    // The same exhausted caller still reaches both, with no headers and no key.
    let before = keys(&server);
    for path in ["/health", "/metrics", "/health/", "/health?full=1"] {
        assert_exempt(&app, || get(path), path).await;
    }
    assert_eq!(keys(&server), before);
    // Only those paths: `/healthz` and `/health/deep` are limited.
    assert_eq!(statuses(&app, 1, || get("/healthz")).await, [429]);
    assert_eq!(statuses(&app, 1, || get("/health/deep")).await, [429]);
}

#[tokio::test]
async fn configured_paths_replace_the_default_ones() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        &everything(r#"paths = ["/status/**", "/static/*/logo.png"]"#),
    );
    assert_exempt(&app, || get("/status"), "/status").await;
    assert_exempt(&app, || get("/status/db"), "/status/db").await;
    assert_exempt(&app, || get("/static/v2/logo.png"), "*").await;
    assert_eq!(statuses(&app, 2, || get("/health")).await, [200, 429]);
}

#[tokio::test]
async fn exempt_ips_and_cidrs_are_the_resolved_client_never_a_claimed_one() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        &everything(r#"ips = ["198.51.100.0/24", "2001:db8:aa::/48", "203.0.113.7"]"#),
    );
    for ip in [
        "198.51.100.1",
        "198.51.100.254",
        "2001:db8:aa:1::5",
        "203.0.113.7",
    ] {
        assert_exempt(&app, || get("/x").from(ip), ip).await;
    }
    assert_eq!(
        statuses(&app, 2, || get("/x").from("203.0.113.8")).await,
        [200, 429]
    );
    // Behind a trusted proxy, the resolved client is exempt.
    let proxied = || {
        get("/x")
            .from("10.0.0.1")
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.9")
    };
    assert_exempt(&app, proxied, "proxied").await;
    // An untrusted peer claiming an exempt address is not exempt.
    let spoofed = || {
        get("/x")
            .from("192.0.2.50")
            .header("x-forwarded-for", "198.51.100.9")
            .header("forwarded", "for=203.0.113.7")
    };
    assert_eq!(statuses(&app, 2, spoofed).await, [200, 429]);
    assert_eq!(keys(&server).len(), 2, "{:?}", keys(&server));
}

#[tokio::test]
async fn exempt_users_need_a_verified_token() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &everything(r#"users = ["ops-bot"]"#));
    let claims = json!({ "sub": "ops-bot", "exp": now_s() + 3600 });
    let valid = token("middleware-test-secret-0123456789", &claims);
    assert_exempt(&app, || get("/x").bearer(&valid), "user").await;
    let forged = token("not-the-secret-but-long-enough!!", &claims);
    assert_eq!(
        statuses(&app, 2, || get("/x").from("192.0.2.60").bearer(&forged)).await,
        [200, 429]
    );
    let someone = token(
        "middleware-test-secret-0123456789",
        &json!({ "sub": "someone", "exp": now_s() + 3600 }),
    );
    assert_eq!(
        statuses(&app, 2, || get("/x").bearer(&someone)).await,
        [200, 429]
    );
}

#[tokio::test]
async fn exempt_api_keys_match_exactly() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &everything(r#"api_keys = ["internal-key-1"]"#));
    assert_exempt(
        &app,
        || get("/x").header("x-api-key", "internal-key-1"),
        "key",
    )
    .await;
    for (peer, key) in [
        ("192.0.2.70", "internal-key-2"),
        ("192.0.2.71", "INTERNAL-KEY-1"),
    ] {
        assert_eq!(
            statuses(&app, 2, || get("/x").from(peer).header("x-api-key", key)).await,
            [200, 429],
            "{key}"
        );
    }
}
