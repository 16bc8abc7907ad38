//! The app and the limiters both HTTP benches measure (`benches/http.rs` by time and
//! CPU, `benches/http_instructions.rs` by instructions): one definition, so both
//! measure the same thing. Each bench uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use redis::aio::MultiplexedConnection;
use redlimit::http::{Config, RateLimitLayer};
use redlimit::{Backend, RateLimiter};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

/// The limiter's timeout for Redis in the bench.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// One rule on `/api/hello`, a token bucket no benchmark can empty.
pub const ONE_RULE: &str = r#"
[[rules]]
name = "hello"
path = "/api/hello"
methods = ["GET"]
key = "ip"
limits = [{ name = "burst", algorithm = "token_bucket", capacity = 1000000000, refill_tokens = 1000000000, refill_ms = 1000 }]
"#;

/// The same, believing `X-Forwarded-For` from loopback: one key per connection.
pub const ONE_RULE_BEHIND_PROXY: &str = r#"
[identity]
trusted_proxies = ["127.0.0.1/32"]

[[rules]]
name = "hello"
path = "/api/hello"
methods = ["GET"]
key = "ip"
limits = [{ name = "burst", algorithm = "token_bucket", capacity = 1000000000, refill_tokens = 1000000000, refill_ms = 1000 }]
"#;

/// Two limits on `/api/hello` (a token bucket and an hourly fixed window, one caller):
/// one `RL.ALL` per request.
pub const TWO_LIMITS: &str = r#"
[[rules]]
name = "hello"
path = "/api/hello"
methods = ["GET"]
key = "ip"
limits = [
  { name = "burst", algorithm = "token_bucket", capacity = 1000000000, refill_tokens = 1000000000, refill_ms = 1000 },
  { name = "hourly", algorithm = "fixed", limit = 1000000000, window_ms = 3600000 },
]
"#;

/// The app: `GET /api/hello` answers `hello`.
pub fn app() -> Router {
    Router::new().route("/api/hello", get(|| async { "hello\n" }))
}

/// Our layer over `limiter` with the rules of `config`.
pub fn redlimit_layer(limiter: RateLimiter, config: &str) -> RateLimitLayer {
    let config = Config::from_toml(config).expect("the bench's configuration parses");
    RateLimitLayer::from_config(limiter, &config).expect("the bench's configuration is valid")
}

/// A limiter on the Redis at `url`, with the bench's timeout: not the default 50 ms, on
/// this shared machine a scheduling stall of 50 ms opens the circuit breaker, and a
/// second of decisions goes to the in-memory fallback; that would measure the fallback,
/// not Redis.
pub fn on_redis(url: &str) -> RateLimiter {
    RateLimiter::builder(Backend::redis(url).expect("a Redis URL"))
        .timeout(REDIS_TIMEOUT)
        .build()
        .expect("a limiter")
}

/// `app` behind tower_governor with a limit no run reaches, headers on (as ours).
pub fn with_governor(app: Router) -> Router {
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(u32::MAX)
        .use_headers()
        .finish()
        .expect("a governor configuration");
    app.layer(GovernorLayer::new(governor))
}

/// A multiplexed redis-rs connection to `url`, as the limiter's own.
pub async fn incr_connection(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection to Redis")
}

/// The floor of any limiter that asks Redis once per request: one `INCR` on one
/// multiplexed connection, nothing else (no script, no module, no headers).
pub async fn incr_then_serve(
    State(mut connection): State<MultiplexedConnection>,
    request: Request,
    next: Next,
) -> Response {
    let _: i64 = redis::cmd("INCR")
        .arg("bench:incr")
        .query_async(&mut connection)
        .await
        .expect("INCR");
    next.run(request).await
}
