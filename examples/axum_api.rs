//! An axum API behind the redlimit middleware.
//!
//! Reads `REDIS_URL` (default `redis://127.0.0.1:6379`), `LISTEN` (default
//! `127.0.0.1:3000`) and `REDLIMIT_CONFIG` (default `examples/axum_api.toml`); reloads
//! the configuration on SIGHUP or when the file changes. `LOG_FORMAT=json` logs JSON.
//!
//! ```text
//! cargo run --example axum_api
//! curl -i http://127.0.0.1:3000/api/hello
//! ```

use axum::Router;
use axum::routing::{get, post};
use redlimit::http::{Config, RateLimitLayer};
use redlimit::{Backend, RateLimiter};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let metrics = layer.metrics();

    let app = Router::new()
        .route("/api/hello", get(|| async { "hello\n" }))
        .route("/api/login", post(|| async { "welcome\n" }))
        .route("/health", get(|| async { "ok\n" }))
        .route("/metrics", get(move || async move { metrics.render() }))
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
