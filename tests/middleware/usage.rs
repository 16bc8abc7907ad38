//! The usage route (`layer.usage()`, GitHub `/rate_limit` style): a caller's quota under
//! every rule and route limit, read without counting.

use crate::support::{get, layer, post};
use axum::Router;
use axum::routing::{get as get_route, post as post_route};

const RULES: &str = r#"
[[rules]]
name = "hello"
path = "/api/hello"
limits = [{ name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 60000 }]

[[rules]]
name = "login"
path = "/api/login"
limits = "5/minute"
"#;

#[tokio::test]
async fn the_usage_route_reports_every_quota_without_counting() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, RULES);
    let write = layer.limit("write", "2/minute").unwrap();
    let app = Router::new()
        .route("/api/write", post_route(|| async { "written" }))
        .route_layer(write)
        .route("/api/hello", get_route(|| async { "hello" }))
        .route("/rate_limit", get_route(layer.usage()))
        .layer(layer);
    for _ in 0..3 {
        assert_eq!(get("/api/hello").send(&app).await.status, 200);
    }
    assert_eq!(post("/api/write").send(&app).await.status, 200);
    let keys_before = crate::support::keys(&server);
    let first = get("/rate_limit").send(&app).await;
    let second = get("/rate_limit").send(&app).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.must("content-type"), "application/json");
    let usage = first.json();
    println!("{usage}");
    assert_eq!(usage["caller"]["ip"], "192.0.2.1");
    let burst = &usage["resources"]["hello"]["burst"];
    assert_eq!(
        (&burst["limit"], &burst["remaining"], &burst["used"]),
        (&10.into(), &7.into(), &3.into())
    );
    assert_eq!(burst["reset_after"], 180, "3 tokens back at 1 per minute");
    let login = &usage["resources"]["login"]["5/minute"];
    assert_eq!(
        (&login["remaining"], &login["used"], &login["reset_after"]),
        (&5.into(), &0.into(), &0.into())
    );
    let write = &usage["resources"]["write"]["2/minute"];
    assert_eq!(
        (&write["remaining"], &write["used"]),
        (&1.into(), &1.into())
    );
    // Reading counts nothing and writes nothing.
    assert_eq!(second.json()["resources"], usage["resources"]);
    assert_eq!(crate::support::keys(&server), keys_before);
    // Another caller: whole quotas.
    let other = get("/rate_limit").from("192.0.2.2").send(&app).await.json();
    assert_eq!(other["resources"]["hello"]["burst"]["remaining"], 10);
}
