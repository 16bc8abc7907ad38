//! The http bench's apps driven directly (no TCP, no load generator), for counting
//! instructions per request with callgrind: `scripts/http-instructions.sh` runs this
//! program under `valgrind --tool=callgrind` twice per variant, with `N` and `2N`
//! requests, and divides the difference by `N` (so the set-up, the connection to Redis
//! and the warm-up cancel out).
//!
//! ```text
//! scripts/http-instructions.sh
//! ```
//!
//! Arguments (after `--bench`): the variant and the number of requests. Variants, as in
//! `benches/http.rs`: `none` (a), `redis` (b), `governor` (c), `memory` (d), `incr` (e,
//! one bare `INCR` per request through a redis-rs multiplexed connection), `redis2` (f),
//! `memory2` (g). `REDLIMIT_HTTP_URL` is the Redis URL (a server with the module) for the
//! Redis variants. Every request is `GET /api/hello` from `127.0.0.1`, one at a time, on
//! a current-thread Tokio runtime (the same instructions run after run: no work stealing,
//! no cross-thread wake-ups), or on `REDLIMIT_BENCH_APP_THREADS` workers when set above
//! 0 (the bench's multi-thread runtime; counts then move by ~1,000 from run to run); the
//! answer's body is read, and must be a 200.
//!
//! Run without `--bench` (as `cargo test --benches` does) it only says how to run it.

mod http_app;

use std::env;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use http_body_util::BodyExt;
use redlimit::RateLimiter;
use tower::ServiceExt;

use http_app::{
    ONE_RULE, TWO_LIMITS, app, incr_connection, incr_then_serve, on_redis, redlimit_layer,
    with_governor,
};

/// Requests before the counted ones (connections, allocator, caches).
const WARM_UP: usize = 200;

fn main() {
    let args: Vec<String> = env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") {
        println!("http_instructions: run it through scripts/http-instructions.sh (skipped)");
        return;
    }
    let mut rest = args.iter().skip(1).filter(|arg| !arg.starts_with("--"));
    let variant = rest
        .next()
        .expect("a variant: none, redis, governor, memory, incr, redis2, memory2");
    let requests: usize = rest
        .next()
        .map_or(1000, |n| n.parse().expect("a number of requests"));
    let threads = env::var("REDLIMIT_BENCH_APP_THREADS").map_or(0, |n| {
        n.parse().expect("REDLIMIT_BENCH_APP_THREADS is a number")
    });
    let runtime = match threads {
        0 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        threads => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build(),
    }
    .expect("a runtime");
    runtime.block_on(async {
        let app = app_for(variant).await;
        drive(&app, WARM_UP).await;
        drive(&app, requests).await;
    });
    println!("{variant}: {requests} requests");
}

fn url() -> String {
    env::var("REDLIMIT_HTTP_URL").expect("REDLIMIT_HTTP_URL: a Redis URL with the module")
}

async fn app_for(variant: &str) -> Router {
    match variant {
        "none" => app(),
        "redis" => app().layer(redlimit_layer(on_redis(&url()), ONE_RULE)),
        "redis2" => app().layer(redlimit_layer(on_redis(&url()), TWO_LIMITS)),
        "memory" => app().layer(redlimit_layer(RateLimiter::memory(), ONE_RULE)),
        "memory2" => app().layer(redlimit_layer(RateLimiter::memory(), TWO_LIMITS)),
        "governor" => with_governor(app()),
        "incr" => app().layer(axum::middleware::from_fn_with_state(
            incr_connection(&url()).await,
            incr_then_serve,
        )),
        other => panic!("unknown variant {other}"),
    }
}

/// Sends `requests` requests one at a time and reads every answer.
async fn drive(app: &Router, requests: usize) {
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("an address");
    for _ in 0..requests {
        let mut request = Request::get("/api/hello")
            .body(Body::empty())
            .expect("a request");
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = app.clone().oneshot(request).await.expect("an answer");
        assert_eq!(response.status(), 200, "every answer is a 200");
        let body = response.into_body().collect().await.expect("the body");
        assert_eq!(body.to_bytes().len(), 6);
    }
}
