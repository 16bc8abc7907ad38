//! The `/health` helper (`layer.health()`, `RateLimiter::health`): Redis reachable, the
//! check's latency, the module and its version, the circuit breaker; on every server.

use crate::support::get;
use axum::Router;
use axum::routing::get as get_route;
use redlimit::http::{RateLimitLayer, Settings};
use redlimit::{Backend, FailurePolicy, Policy, RateLimiter};
use redlimit_test_support::{ServerBuilder, available_servers, test_engine};
use std::time::Duration;

fn app(limiter: RateLimiter) -> Router {
    let layer = RateLimitLayer::new(limiter, Settings::default());
    Router::new()
        .route("/health", get_route(layer.health()))
        .layer(layer)
}

fn limiter(url: &str) -> RateLimiter {
    RateLimiter::builder(crate::support::with_engine(Backend::redis(url).unwrap()))
        .timeout(Duration::from_millis(500))
        .circuit_breaker(1, Duration::from_secs(60))
        .on_failure(FailurePolicy::Open)
        .build()
        .unwrap()
}

#[tokio::test]
async fn health_reports_redis_the_module_and_the_breaker_on_every_server() {
    let binaries = available_servers();
    assert!(!binaries.is_empty(), "no server found");
    for binary in binaries {
        println!("== {}", binary.name());
        // The module, or under `REDLIMIT_TEST_ENGINE=scripts|auto` the Lua scripts on a
        // server without it: 200 either way, and the body says which decides.
        let module = test_engine().loads_module();
        let server = crate::support::start(&binary);
        let reply = get("/health").send(&app(limiter(&server.url()))).await;
        println!("{}", reply.body);
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.must("content-type"), "application/json");
        let body = reply.json();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["redis"]["reachable"], true);
        assert_eq!(body["redis"]["module_loaded"], module);
        assert_eq!(
            body["redis"]["engine"],
            if module { "module" } else { "scripts" }
        );
        assert_eq!(body["redis"]["breaker"], "closed");
        assert_eq!(
            body["redis"]["module_version"]
                .as_i64()
                .is_some_and(|v| v > 0),
            module,
            "{body}"
        );
        let latency = body["redis"]["latency_ms"].as_f64().unwrap();
        assert!(latency > 0.0 && latency < 5_000.0, "{latency}");

        // Without the module, the module engine cannot decide: reachable, 503, the error
        // names the module.
        let bare = ServerBuilder::new(&binary).start();
        let module_only = RateLimiter::builder(Backend::redis(&bare.url()).unwrap())
            .on_failure(FailurePolicy::Open)
            .build()
            .unwrap();
        let reply = get("/health").send(&app(module_only)).await;
        assert_eq!(reply.status, 503, "{reply:?}");
        let body = reply.json();
        assert_eq!(
            (
                &body["status"],
                &body["redis"]["reachable"],
                &body["redis"]["module_loaded"]
            ),
            (&"degraded".into(), &true.into(), &false.into())
        );
        assert!(
            body["redis"]["error"].as_str().unwrap().contains("module"),
            "{body}"
        );

        // Down: unreachable; after a failed decision the breaker is open.
        let url = server.url();
        let down = limiter(&url);
        drop(server);
        let policy = Policy::fixed(10, 1_000).unwrap();
        let decision = down.check("k", &policy).await.unwrap();
        assert!(decision.allowed, "fails open");
        let health = down.health().await;
        println!("{health:?}");
        assert!(!health.reachable && !health.module_loaded && health.breaker_open);
        assert!(!health.is_healthy());
        let reply = get("/health").send(&app(down)).await;
        assert_eq!(reply.status, 503);
        assert_eq!(reply.json()["redis"]["breaker"], "open");
    }
    // The memory engine is always healthy.
    let memory = RateLimiter::memory().health().await;
    assert!(memory.is_healthy(), "{memory:?}");
}
