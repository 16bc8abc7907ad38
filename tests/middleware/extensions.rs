//! Handlers see the caller the layer resolved (`Extension<Caller>`): the client IP
//! behind trusted proxies, the verified user and tier, and every layer's decisions.

use crate::support::{get, layer, now_s, token};
use axum::routing::get as get_route;
use axum::{Extension, Json, Router};
use redlimit::http::Caller;

const SECRET: &str = "extensions-test-secret-0123456789";

const CONFIG: &str = r#"
[identity]
trusted_proxies = ["10.0.0.0/8"]
[identity.jwt]
secret = "extensions-test-secret-0123456789"

[exempt]
ips = ["192.0.2.99"]

[[rules]]
name = "api"
path = "/api/**"
key = "user"
limits = [
  { name = "per-user", rate = "5/minute" },
  { name = "per-ip", rate = "10/minute", key = "ip" },
]
"#;

async fn show(Extension(caller): Extension<Caller>) -> Json<serde_json::Value> {
    let decisions: Vec<serde_json::Value> = caller
        .decisions
        .iter()
        .map(|d| serde_json::json!([d.rule, d.limit, d.decision.remaining]))
        .collect();
    Json(serde_json::json!({
        "ip": caller.ip.map(|ip| ip.to_string()),
        "user": caller.user,
        "tier": caller.tier,
        "decisions": decisions,
    }))
}

#[tokio::test]
async fn handlers_see_the_caller_and_the_decisions() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, CONFIG);
    let write = layer.limit("write", "2/minute").unwrap();
    let app = Router::new()
        .route("/api/x", get_route(show))
        .route_layer(write)
        .layer(layer);
    let erin = token(
        SECRET,
        &serde_json::json!({ "sub": "erin", "tier": "pro", "exp": now_s() + 600 }),
    );
    let reply = get("/api/x")
        .from("10.0.0.1")
        .header("x-forwarded-for", "198.51.100.7")
        .bearer(&erin)
        .send(&app)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.json(),
        serde_json::json!({
            "ip": "198.51.100.7",
            "user": "erin",
            "tier": "pro",
            "decisions": [["api", "per-user", 4], ["api", "per-ip", 9], ["write", "2/minute", 1]],
        })
    );
    // An exempt caller: known to the handler, no decision taken.
    let exempt = get("/api/x").from("192.0.2.99").send(&app).await;
    assert_eq!(
        exempt.json(),
        serde_json::json!({ "ip": "192.0.2.99", "user": null, "tier": null, "decisions": [] })
    );
}
