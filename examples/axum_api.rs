//! An axum API behind the redlimit middleware: one layer stack, one `/metrics`.
//!
//! - `GET /api/hello`: per client IP (a burst of 10, then 1 per second) and per
//!   verified JWT user (1000 per hour), one rule of `examples/axum_api.toml`;
//! - `POST /api/login`: per IP, 5 attempts per minute (the file), and, attached to the
//!   route in code, 3 **failed** logins per minute and 10 per hour per IP (a 401 counts,
//!   a successful login does not);
//! - `/metrics`: the layer's, the client's and the app's series, one exporter.
//!
//! Reads `REDIS_URL` (default `redis://127.0.0.1:6379`), `LISTEN` (default
//! `127.0.0.1:3000`) and `REDLIMIT_CONFIG` (default `examples/axum_api.toml`); reloads
//! the configuration on SIGHUP or when the file changes. `LOG_FORMAT=json` logs JSON.
//!
//! ```text
//! cargo run --example axum_api
//! curl -i http://127.0.0.1:3000/api/hello
//! curl -i -X POST -H 'x-password: wrong' http://127.0.0.1:3000/api/login   # counts
//! curl -i -X POST -H 'x-password: demo' http://127.0.0.1:3000/api/login    # does not
//! ```

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Extension, Router};
use redlimit::http::{Caller, Config, PrometheusExporter, RateLimitLayer};
use redlimit::{Backend, RateLimiter};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Greets the caller the layer resolved (the verified JWT's user, else the client IP).
async fn hello(caller: Option<Extension<Caller>>) -> String {
    match caller
        .as_ref()
        .and_then(|c| c.user.as_deref().map(str::to_owned))
    {
        Some(user) => format!("hello, {user}\n"),
        None => "hello\n".to_owned(),
    }
}

/// A stand-in login: the password `demo` succeeds, anything else is a 401.
async fn login(headers: HeaderMap) -> (StatusCode, &'static str) {
    metrics::counter!("axum_api_login_attempts_total").increment(1);
    if headers.get("x-password").is_some_and(|p| p == "demo") {
        (StatusCode::OK, "welcome\n")
    } else {
        (StatusCode::UNAUTHORIZED, "wrong password\n")
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One exporter for every `metrics` series of the process, installed before serving.
    let exporter = PrometheusExporter::default();
    exporter.install()?;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if env_or("LOG_FORMAT", "text") == "json" {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379");
    let listen: SocketAddr = env_or("LISTEN", "127.0.0.1:3000").parse()?;
    let config_path = PathBuf::from(env_or("REDLIMIT_CONFIG", "examples/axum_api.toml"));

    // Checked at start: a bad field stops the program with its name
    // (`examples/axum_api.toml: rules[0].limits[0].capacity: ...`).
    let config = match Config::load(&config_path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let limiter = RateLimiter::builder(Backend::redis(&redis_url)?).build()?;
    // The startup check: a server without the module would leave every decision to the
    // failure policy (fail-closed rules refusing everything, others unlimited).
    match limiter.verify().await {
        Ok(info) => tracing::info!(
            redis = %redis_url,
            module_version = ?info.module_version(),
            "redlimit module found"
        ),
        Err(error) if error.is_module_not_loaded() => {
            eprintln!("{error}");
            std::process::exit(3);
        }
        // Redis down at start: serve anyway; the failure policies answer until it is up.
        Err(error) => tracing::warn!(%error, "redlimit: cannot check the module now"),
    }
    let layer = RateLimitLayer::from_config(limiter, &config)?;
    let _watch = layer
        .reloader()
        .watch(config_path.clone(), Duration::from_secs(1));
    // Next to the route, sharing the layer's limiter, callers and metrics: failed
    // logins only (peeked before the handler, counted after a 401).
    let failed_logins = layer
        .limit("login-failures", "3/minute; 10/hour")?
        .per_ip()
        .count_when(|status| status == StatusCode::UNAUTHORIZED);

    let app = Router::new()
        .route("/api/login", post(login))
        .route_layer(failed_logins)
        .route("/api/hello", get(hello))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(exporter.handler()))
        .layer(layer);

    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, redis = %redis_url, config = %config_path.display(), "axum_api listening");
    println!("listening on http://{listen}  (try: curl -i http://{listen}/api/hello)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
