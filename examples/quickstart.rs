//! The demo: a real redis-server with the redlimit module, and a burst of requests.
//!
//! Run with `scripts/demo.sh` (it installs what is missing and builds the module), or,
//! once the module is built, `cargo run --example quickstart`: it starts its own
//! `redis-server` with the module on a free port and stops it at the end. With
//! `REDIS_URL` set (`REDIS_URL=redis://127.0.0.1:6379 cargo run --example quickstart`)
//! it uses that server instead, which must have the module loaded; it resets the demo's
//! two keys (`user:42`, `user:42:cell`) first.

use redis::cmd;
use redlimit::{Backend, RateLimiter};
use redlimit_test_support::{Server, ServerBuilder, available_servers, module_path};

/// The check every application makes at startup: the module is loaded on the server
/// (else every decision falls to the failure policy). Prints what it found; stops the
/// program, naming the problem, when the module is missing or the server unreachable.
fn verify(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let limiter = RateLimiter::builder(Backend::redis(url)?).build()?;
    let info = match runtime.block_on(limiter.verify()) {
        Ok(info) => info,
        Err(error) => {
            // "the redlimit module is not loaded on 127.0.0.1:6379: start the server ..."
            eprintln!("{error}");
            std::process::exit(3);
        }
    };
    for node in &info.nodes {
        let version = node
            .module_version
            .map_or_else(|| "?".to_owned(), |v| v.to_string());
        println!(
            "RateLimiter::verify: the redlimit module (version {version}) is loaded on {}",
            node.address
        );
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Kept alive until the end of the demo: dropping it stops the server.
    let mut own_server: Option<Server> = None;
    let mut con = match std::env::var("REDIS_URL") {
        Ok(url) => {
            println!("Using {url} (REDIS_URL)");
            // Stops here, naming the server, when the module is not loaded there.
            verify(&url)?;
            println!();
            let mut con = redis::Client::open(url.as_str())?.get_connection()?;
            // Fresh keys.
            let _: i64 = cmd("RL.RESET")
                .arg("user:42")
                .arg("user:42:cell")
                .query(&mut con)?;
            con
        }
        Err(_) => {
            let binary = available_servers()
                .into_iter()
                .next()
                .ok_or("no redis-server found: run scripts/install-deps.sh")?;
            println!(
                "Starting {} with {} ...",
                binary.name(),
                module_path().display()
            );
            let server = ServerBuilder::new(&binary).module(module_path()).start();
            println!("redis-server listening on 127.0.0.1:{}", server.port());
            verify(&server.url())?;
            println!();
            let con = server.connection();
            own_server = Some(server);
            con
        }
    };

    println!("A token bucket of 5 tokens that gains 1 token per second:");
    println!(
        "> RL.TOKENBUCKET user:42 5 1 1000        (reply: allowed limit remaining retry_after_ms reset_after_ms)"
    );
    for request in 1..=7 {
        let [allowed, limit, remaining, retry_after_ms, reset_after_ms]: [i64; 5] =
            cmd("RL.TOKENBUCKET")
                .arg("user:42")
                .arg(5)
                .arg(1)
                .arg(1000)
                .query(&mut con)?;
        let verdict = if allowed == 1 { "allowed" } else { "DENIED " };
        println!(
            "request {request}: {verdict}  limit={limit} remaining={remaining} retry_after_ms={retry_after_ms} reset_after_ms={reset_after_ms}"
        );
    }

    println!("\nA caller may reserve the next token instead of being denied (MAXWAIT 2000 ms):");
    let reply: Vec<i64> = cmd("RL.TOKENBUCKET")
        .arg("user:42")
        .arg(5)
        .arg(1)
        .arg(1000)
        .arg("MAXWAIT")
        .arg(2000)
        .query(&mut con)?;
    println!(
        "> RL.TOKENBUCKET user:42 5 1 1000 MAXWAIT 2000  ->  {reply:?}  (allowed, act after retry_after_ms)"
    );

    println!("\nredis-cell users keep their calls, renamed from CL. to RL.:");
    let reply: Vec<i64> = cmd("RL.THROTTLE")
        .arg("user:42:cell")
        .arg(15)
        .arg(30)
        .arg(60)
        .query(&mut con)?;
    println!(
        "> RL.THROTTLE user:42:cell 15 30 60  ->  {reply:?}  (limited limit remaining retry_after_s reset_after_s)"
    );

    let ttl: i64 = cmd("PTTL").arg("user:42").query(&mut con)?;
    println!("\nThe key expires by itself when the bucket is full again: PTTL user:42 = {ttl} ms");
    drop(con);
    if let Some(server) = own_server {
        drop(server);
        println!("Server stopped.");
    }
    Ok(())
}
