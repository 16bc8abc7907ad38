//! HTTP benchmark: requests per second and p50/p99 latency of one small axum app
//! (`GET /api/hello` answering `hello`) without a limiter, behind `RateLimitLayer`
//! against a local redis-server with the module, behind `RateLimitLayer` with the
//! in-memory backend, behind `tower_governor` (in-process) as a reference, and behind a
//! bare `INCR` per request through redis-rs (the floor of any limiter that asks Redis
//! once per request); and the layer with two limits per request (a token bucket and an
//! hourly fixed window: one `RL.ALL` on Redis), on Redis and in memory.
//!
//! ```text
//! cargo bench --bench http
//! ```
//!
//! The bench builds the module itself first (`cargo build --release -p redlimit-module`,
//! with `$CARGO` if set) and loads `target/release/libredlimit.so` into the first server
//! of `scripts/install-deps.sh` found (`REDLIMIT_SERVERS=redis-8.2` picks another);
//! `REDLIMIT_MODULE=/path/to/libredlimit.so` benchmarks another build (nothing is built).
//!
//! Every variant is the same router, served by `axum::serve` with
//! `into_make_service_with_connect_info::<SocketAddr>()` on its own loopback port, all in
//! one Tokio runtime. The limits are high enough that nothing is denied: the figures are
//! the cost of deciding, not of refusing. The bench checks that every answer was a 200,
//! and counts the decisions the Redis variants left to the in-memory fallback (backend
//! errors; the limiter's timeout is 1 s here, not the default 50 ms, so that a stall of
//! the shared machine does not turn a run into a measure of the fallback).
//!
//! The load generator runs in the same process on its own runtime: `connections`
//! keep-alive HTTP/1.1 connections over raw `TcpStream`s, each sending one `GET` at a
//! time (no pipelining) and reading the whole answer before the next, for `seconds` per
//! variant. The variants are interleaved (none, redlimit, ..., none, redlimit, ...) for
//! several rounds; each round's rate is divided by the unlimited app's rate of the same
//! round, and the table reports medians over the rounds. The app, the generator and
//! redis-server share the machine's cores: a limiter's CPU is taken from the app.
//!
//! Throughput on a shared machine moves with whatever else runs. So the bench also
//! reads the CPU time (user + system, `/proc/<pid>/stat`) that this process (app and
//! generator) and redis-server spent per request during each run. "CPU × no limiter"
//! is the unlimited app's CPU per request over the variant's, in the same round: the
//! throughput ratio to expect when the CPU is the bottleneck, and far less sensitive to
//! other processes than the measured rate.
//!
//! Environment: `REDLIMIT_BENCH_ROUNDS` (default 7), `REDLIMIT_BENCH_SECONDS` (per
//! variant and round, default 3), `REDLIMIT_BENCH_CONNECTIONS` (default 32),
//! `REDLIMIT_BENCH_APP_THREADS` (Tokio workers of the app, default the number of CPUs),
//! `REDLIMIT_BENCH_CLIENT_THREADS` (of the generator, default 1),
//! `REDLIMIT_BENCH_VARIANTS` (e.g. `b,d`: only these besides the baseline),
//! `REDLIMIT_SERVERS`, `REDLIMIT_MODULE`.
//!
//! Run without `--bench` (as `cargo test --benches` does) it only says how to run it.

mod http_app;

use std::env;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use redlimit::RateLimiter;
use redlimit::http::Metrics;
use redlimit_test_support::{Server, ServerBuilder, available_servers, median};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Barrier;

use http_app::{
    ONE_RULE, ONE_RULE_BEHIND_PROXY, TWO_LIMITS, app, incr_connection, incr_then_serve, on_redis,
    redlimit_layer, with_governor,
};

fn main() {
    if !env::args().any(|arg| arg == "--bench") {
        println!("http benchmark: run it with `cargo bench --bench http` (skipped)");
        return;
    }
    let settings = Settings::from_env();
    let module = redlimit_test_support::release_module_path();
    let Some(binary) = available_servers().into_iter().next() else {
        println!("no server found: run scripts/install-deps.sh (or check REDLIMIT_SERVERS)");
        return;
    };
    let server = ServerBuilder::new(&binary).module(&module).start();

    let app_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.app_threads)
        .enable_all()
        .build()
        .expect("the app's runtime");
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.client_threads)
        .enable_all()
        .build()
        .expect("the load generator's runtime");
    let variants: Vec<Variant> = app_runtime
        .block_on(start_variants(&server))
        .into_iter()
        .filter(|variant| variant.selected(settings.only.as_deref()))
        .collect();

    eprintln!(
        "{} with {}; {} connections, {} s per variant, {} rounds, {} app threads, {} client \
         threads, {} CPUs",
        binary.name(),
        module.display(),
        settings.connections,
        settings.seconds,
        settings.rounds,
        settings.app_threads,
        settings.client_threads,
        cpus(),
    );
    eprintln!(
        "load average (1, 5, 15 min): {}",
        redlimit_test_support::load_average()
    );
    // Warm up every variant (connections to Redis, allocator, caches).
    for variant in &variants {
        let warm = Settings {
            seconds: 1,
            ..settings.clone()
        };
        client_runtime.block_on(load(variant, &warm, server.pid()));
    }

    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for round in 1..=settings.rounds {
        for (variant, runs) in variants.iter().zip(&mut runs) {
            let run = client_runtime.block_on(load(variant, &settings, server.pid()));
            eprintln!(
                "round {round}: {:<44} {:>9.0} req/s  p50 {:>6} µs  p99 {:>6} µs  CPU {:>5.1} \
                 µs/req (redis-server {:.1}){}",
                variant.name,
                run.rate,
                run.p50_us,
                run.p99_us,
                run.cpu_us_per_request,
                run.redis_cpu_us_per_request,
                match (run.not_ok, run.backend_errors) {
                    (0, 0) => String::new(),
                    (not_ok, errors) =>
                        format!("  ({not_ok} answers not 200, {errors} decisions by the fallback)"),
                }
            );
            runs.push(run);
        }
    }
    print_table(&variants, &runs);
    println!(
        "Load average at the end (1, 5, 15 min): {}.",
        redlimit_test_support::load_average()
    );
    drop(server);
}

#[derive(Clone, Debug)]
struct Settings {
    rounds: usize,
    seconds: u64,
    connections: usize,
    app_threads: usize,
    client_threads: usize,
    /// `REDLIMIT_BENCH_VARIANTS=b,d`: these variants only (and always the baseline).
    only: Option<String>,
}

impl Settings {
    fn from_env() -> Self {
        let number = |name: &str, default: usize| {
            env::var(name).map_or(default, |v| {
                v.parse()
                    .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
            })
        };
        Settings {
            rounds: number("REDLIMIT_BENCH_ROUNDS", 7).max(1),
            seconds: number("REDLIMIT_BENCH_SECONDS", 3).max(1) as u64,
            connections: number("REDLIMIT_BENCH_CONNECTIONS", 32).max(1),
            app_threads: number("REDLIMIT_BENCH_APP_THREADS", cpus()).max(1),
            client_threads: number("REDLIMIT_BENCH_CLIENT_THREADS", 1).max(1),
            only: env::var("REDLIMIT_BENCH_VARIANTS").ok(),
        }
    }
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// One app under test.
struct Variant {
    name: &'static str,
    addr: SocketAddr,
    /// An `X-Forwarded-For` per connection (one client IP each), or none.
    forwarded_for: bool,
    /// The layer's metrics, checked for backend errors.
    metrics: Option<Metrics>,
}

impl Variant {
    /// The layer's backend errors so far (a cumulative counter).
    fn backend_errors(&self) -> u64 {
        self.metrics.as_ref().map_or(0, |metrics| {
            counter(&metrics.render(), "redlimit_http_backend_errors_total")
        })
    }

    /// Whether `only` (`b,d`) names this variant; the baseline (a) always runs.
    fn selected(&self, only: Option<&str>) -> bool {
        let label = self
            .name
            .trim_start_matches('(')
            .split(')')
            .next()
            .unwrap_or_default();
        label == "a" || only.is_none_or(|only| only.split(',').any(|l| l.trim() == label))
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("the app serves");
    });
    addr
}

async fn start_variants(server: &Server) -> Vec<Variant> {
    let redis = || on_redis(&server.url());
    let on_redis = redlimit_layer(redis(), ONE_RULE);
    let on_redis_per_client = redlimit_layer(redis(), ONE_RULE_BEHIND_PROXY);
    let in_memory = redlimit_layer(RateLimiter::memory(), ONE_RULE);
    let on_redis_two = redlimit_layer(redis(), TWO_LIMITS);
    let in_memory_two = redlimit_layer(RateLimiter::memory(), TWO_LIMITS);

    vec![
        Variant {
            name: "(a) no limiter",
            addr: serve(app()).await,
            forwarded_for: false,
            metrics: None,
        },
        Variant {
            name: "(b) redlimit layer, Redis, 1 key",
            metrics: Some(on_redis.metrics()),
            addr: serve(app().layer(on_redis)).await,
            forwarded_for: false,
        },
        Variant {
            name: "(b2) redlimit layer, Redis, 1 key per conn.",
            metrics: Some(on_redis_per_client.metrics()),
            addr: serve(app().layer(on_redis_per_client)).await,
            forwarded_for: true,
        },
        Variant {
            name: "(c) tower_governor 0.8 (in-process)",
            addr: serve(with_governor(app())).await,
            forwarded_for: false,
            metrics: None,
        },
        Variant {
            name: "(d) redlimit layer, memory backend",
            metrics: Some(in_memory.metrics()),
            addr: serve(app().layer(in_memory)).await,
            forwarded_for: false,
        },
        Variant {
            name: "(e) reference: one INCR per request",
            addr: serve(app().layer(axum::middleware::from_fn_with_state(
                incr_connection(&server.url()).await,
                incr_then_serve,
            )))
            .await,
            forwarded_for: false,
            metrics: None,
        },
        Variant {
            name: "(f) redlimit layer, Redis, 2 limits (RL.ALL)",
            metrics: Some(on_redis_two.metrics()),
            addr: serve(app().layer(on_redis_two)).await,
            forwarded_for: false,
        },
        Variant {
            name: "(g) redlimit layer, memory backend, 2 limits",
            metrics: Some(in_memory_two.metrics()),
            addr: serve(app().layer(in_memory_two)).await,
            forwarded_for: false,
        },
    ]
}

/// What one variant did in one round.
#[derive(Clone, Debug)]
struct Run {
    rate: f64,
    p50_us: u64,
    p99_us: u64,
    not_ok: u64,
    /// The layer's backend errors in this run: decisions made by the failure policy
    /// (here the in-memory fallback), not by Redis.
    backend_errors: u64,
    /// CPU time of this process (app and generator) and of redis-server per request.
    cpu_us_per_request: f64,
    /// Of which redis-server's.
    redis_cpu_us_per_request: f64,
}

/// What one connection did.
#[derive(Default)]
struct ConnectionRun {
    latencies_ns: Vec<u64>,
    not_ok: u64,
    finished: Option<Instant>,
}

async fn load(variant: &Variant, settings: &Settings, redis_pid: u32) -> Run {
    let errors_before = variant.backend_errors();
    let barrier = Arc::new(Barrier::new(settings.connections + 1));
    let duration = Duration::from_secs(settings.seconds);
    let mut tasks = Vec::with_capacity(settings.connections);
    for connection in 0..settings.connections {
        let barrier = Arc::clone(&barrier);
        let addr = variant.addr;
        let request = request(variant.forwarded_for.then_some(connection));
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect to the app");
            stream.set_nodelay(true).expect("TCP_NODELAY");
            barrier.wait().await;
            drive(stream, &request, Instant::now() + duration).await
        }));
    }
    barrier.wait().await;
    let started = Instant::now();
    let (own_before, redis_before) = (cpu_ticks(None), cpu_ticks(Some(redis_pid)));
    let mut latencies = Vec::new();
    let mut not_ok = 0;
    let mut finished = started;
    for task in tasks {
        let run = task.await.expect("a connection task");
        latencies.extend(run.latencies_ns);
        not_ok += run.not_ok;
        finished = finished.max(run.finished.unwrap_or(started));
    }
    let redis_ticks = cpu_ticks(Some(redis_pid)) - redis_before;
    let cpu_ticks_used = cpu_ticks(None) - own_before + redis_ticks;
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies.get(index).map_or(0, |ns| ns / 1_000)
    };
    if let Some(metrics) = &variant.metrics {
        let text = metrics.render();
        assert_eq!(
            counter(&text, "redlimit_http_denied_total"),
            0,
            "{}: requests were denied:\n{text}",
            variant.name
        );
    }
    let backend_errors = variant.backend_errors() - errors_before;
    Run {
        rate: latencies.len() as f64 / (finished - started).as_secs_f64(),
        cpu_us_per_request: cpu_ticks_used as f64 * MICROS_PER_TICK / latencies.len() as f64,
        redis_cpu_us_per_request: redis_ticks as f64 * MICROS_PER_TICK / latencies.len() as f64,
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        not_ok,
        backend_errors,
    }
}

/// Microseconds per clock tick of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const MICROS_PER_TICK: f64 = 10_000.0;

/// User and system CPU time of a process (all its threads), in clock ticks: this
/// process, or `pid`.
fn cpu_ticks(pid: Option<u32>) -> u64 {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |pid| format!("/proc/{pid}/stat"),
    );
    let Ok(stat) = std::fs::read_to_string(&path) else {
        return 0;
    };
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(14) + field(15)
}

/// The value of the rule `hello`'s counter `name` in a Prometheus text exposition.
fn counter(text: &str, name: &str) -> u64 {
    let series = format!("{name}{{rule=\"hello\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |value| value.parse().expect("a counter value"))
}

/// The request one connection sends again and again.
fn request(forwarded_for: Option<usize>) -> Vec<u8> {
    let mut text = String::from("GET /api/hello HTTP/1.1\r\nHost: bench\r\n");
    if let Some(n) = forwarded_for {
        // 10.x.y.z, one address per connection.
        text.push_str(&format!(
            "X-Forwarded-For: 10.{}.{}.{}\r\n",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        ));
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// Sends `request` and reads each whole answer until `deadline`.
async fn drive(mut stream: TcpStream, request: &[u8], deadline: Instant) -> ConnectionRun {
    let mut run = ConnectionRun {
        latencies_ns: Vec::with_capacity(1 << 16),
        ..ConnectionRun::default()
    };
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        stream.write_all(request).await.expect("send a request");
        let status = loop {
            if let Some((status, length)) = complete_response(&buffer) {
                buffer.drain(..length);
                break status;
            }
            let n = stream.read(&mut chunk).await.expect("read an answer");
            assert!(n > 0, "the app closed the connection");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let done = Instant::now();
        run.latencies_ns
            .push(u64::try_from((done - now).as_nanos()).unwrap_or(u64::MAX));
        if status != 200 {
            run.not_ok += 1;
        }
        run.finished = Some(done);
    }
    run
}

/// The status and total length of the first answer in `buffer`, once it is whole.
fn complete_response(buffer: &[u8]) -> Option<(u16, usize)> {
    let head_end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buffer[..head_end]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let length: usize = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.trim().parse().expect("a content length"))
        .expect("answers of known length");
    (buffer.len() >= head_end + length).then_some((status, head_end + length))
}

fn print_table(variants: &[Variant], runs: &[Vec<Run>]) {
    let baseline = &runs[0];
    println!();
    println!(
        "| variant | req/s | × no limiter | p50 µs | p99 µs | CPU µs/req | of which \
         redis-server | CPU × no limiter | by fallback |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (variant, runs) in variants.iter().zip(runs) {
        let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
        let ratios: Vec<f64> = runs
            .iter()
            .zip(baseline)
            .map(|(run, base)| run.rate / base.rate)
            .collect();
        let p50: Vec<f64> = runs.iter().map(|r| r.p50_us as f64).collect();
        let p99: Vec<f64> = runs.iter().map(|r| r.p99_us as f64).collect();
        let by_fallback: u64 = runs.iter().map(|r| r.backend_errors).sum();
        let cpu: Vec<f64> = runs.iter().map(|r| r.cpu_us_per_request).collect();
        let redis_cpu: Vec<f64> = runs.iter().map(|r| r.redis_cpu_us_per_request).collect();
        // The throughput the CPU allows, relative to the unlimited app: CPU per request
        // of the unlimited app over this variant's, in the same round.
        let cpu_ratios: Vec<f64> = runs
            .iter()
            .zip(baseline)
            .map(|(run, base)| base.cpu_us_per_request / run.cpu_us_per_request)
            .collect();
        println!(
            "| {} | {:.0} | {:.2}× | {:.0} | {:.0} | {:.1} | {:.1} | {:.2}× | {} |",
            variant.name.trim(),
            median(&rates),
            median(&ratios),
            median(&p50),
            median(&p99),
            median(&cpu),
            median(&redis_cpu),
            median(&cpu_ratios),
            if variant.metrics.is_some() {
                by_fallback.to_string()
            } else {
                "–".to_owned()
            },
        );
    }
    let not_ok: u64 = runs.iter().flatten().map(|r| r.not_ok).sum();
    let backend_errors: u64 = runs.iter().flatten().map(|r| r.backend_errors).sum();
    println!();
    println!(
        "Medians over {} rounds; answers other than 200: {not_ok}; decisions left to the \
         failure policy (backend errors, measured runs): {backend_errors}.",
        baseline.len()
    );
}
