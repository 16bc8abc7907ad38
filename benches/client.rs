//! Client benchmark: decisions per second through the `redlimit` client against a real
//! server with the module, over one multiplexed connection, divided by plain `INCR`
//! through that same connection in the same run.
//!
//! ```text
//! cargo bench --bench client
//! ```
//!
//! The bench builds the module first (`cargo build --release -p redlimit-module`, with
//! `$CARGO` if set) and loads `target/release/libredlimit.so`; `REDLIMIT_MODULE=/path`
//! benchmarks another build instead. For each server found (`REDLIMIT_SERVERS` restricts
//! them, as for the live tests) it starts one server with the module and persistence
//! off, opens **one** `redis` multiplexed connection, and measures, with 1 and with 64
//! concurrent tokio tasks (a multi-threaded runtime), each for a fixed time:
//!
//! - `INCR` through the connection: the baseline;
//! - `RL.TOKENBUCKET key 100 10 1000` sent as a plain command through the connection:
//!   what the module costs without the client crate;
//! - `RateLimiter::check` with that policy, the limiter built on that very connection
//!   (`Backend::connection`), so every row shares one socket: the client crate's cost
//!   (timeout, breaker, parsing) on top of the command;
//! - `RateLimiter::check` on `Backend::memory()`: the same algorithm in this process,
//!   for reference.
//!
//! Keys are drawn at random from 100,000 per workload. The workloads run interleaved
//! (INCR, raw, client, memory, INCR, ...) for several rounds; a row's ratio is its rate
//! divided by the INCR rate of the same round and task count, and the table gives the
//! medians over the rounds, and the median over the rounds of each measurement's p50
//! and p99 latency per operation (whole microseconds, the task's scheduling included;
//! timing adds two clock reads per operation, which only the memory rows notice). The
//! limiter answers errors instead of a failure policy (`FailurePolicy::Error`) with a
//! 1 s timeout, so that a slow moment can never be counted as a fast fallback decision;
//! errors and non-server decisions are counted and printed.
//!
//! Short measurements, many rounds: on a shared machine a stall then spoils one short
//! sample of one workload, which the median discards, rather than a long one.
//!
//! Environment: `REDLIMIT_BENCH_ROUNDS` (default 11), `REDLIMIT_BENCH_MS` (time per
//! measurement, default 500), `REDLIMIT_SERVERS`, `REDLIMIT_MODULE`.
//!
//! Run without `--bench` (as `cargo test --benches` does) it only says how to run it.

use redis::aio::MultiplexedConnection;
use redlimit::{Backend, FailurePolicy, Policy, RateLimiter, Source};
use redlimit_test_support::{ServerBinary, ServerBuilder, available_servers, median, min_max};
use std::env;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Keys per workload.
const KEYSPACE: usize = 100_000;
/// Concurrent tasks measured.
const TASKS: [usize; 2] = [1, 64];

/// What one task does in a loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Incr,
    RawTokenBucket,
    Client,
    Memory,
}

impl Workload {
    const ALL: [Self; 4] = [Self::Incr, Self::RawTokenBucket, Self::Client, Self::Memory];

    fn label(self) -> &'static str {
        match self {
            Self::Incr => "`INCR` (baseline)",
            Self::RawTokenBucket => "`RL.TOKENBUCKET 100 10 1000`, plain command",
            Self::Client => "`RateLimiter::check`, token bucket 100 10 1000, Redis",
            Self::Memory => "`RateLimiter::check`, token bucket 100 10 1000, memory",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Self::Incr => "incr",
            Self::RawTokenBucket => "raw",
            Self::Client => "client",
            Self::Memory => "memory",
        }
    }
}

/// Everything a task needs; cheap to clone.
#[derive(Clone)]
struct Bench {
    connection: MultiplexedConnection,
    redis: RateLimiter,
    memory: RateLimiter,
    policy: Policy,
    keys: Arc<Vec<Vec<String>>>,
}

/// What one task counted.
#[derive(Default)]
struct Count {
    ops: u64,
    /// Microseconds each operation took, for the percentiles.
    latencies_us: Vec<u32>,
    allowed: u64,
    errors: u64,
    not_from_server: u64,
    first_error: Option<String>,
}

impl Count {
    fn add(&mut self, other: Self) {
        self.ops += other.ops;
        self.latencies_us.extend(other.latencies_us);
        self.allowed += other.allowed;
        self.errors += other.errors;
        self.not_from_server += other.not_from_server;
        self.first_error = self.first_error.take().or(other.first_error);
    }
}

impl Bench {
    /// Runs `workload` in a loop until `deadline`, on keys drawn with `seed`.
    async fn task(self, workload: Workload, seed: u64, deadline: Instant) -> Count {
        let keys = &self.keys[Workload::ALL
            .iter()
            .position(|w| *w == workload)
            .unwrap_or(0)];
        let mut rng = seed | 1;
        let mut count = Count::default();
        let mut con = self.connection.clone();
        while Instant::now() < deadline {
            // xorshift64: cheap, and good enough to spread keys.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = &keys[(rng % keys.len() as u64) as usize];
            let sent = Instant::now();
            let result: Result<Option<bool>, String> = match workload {
                Workload::Incr => redis::cmd("INCR")
                    .arg(key)
                    .query_async::<i64>(&mut con)
                    .await
                    .map(|_| None)
                    .map_err(|e| e.to_string()),
                Workload::RawTokenBucket => redis::cmd("RL.TOKENBUCKET")
                    .arg(key)
                    .arg(100)
                    .arg(10)
                    .arg(1000)
                    .query_async::<Vec<i64>>(&mut con)
                    .await
                    .map(|reply| Some(reply.first() == Some(&1)))
                    .map_err(|e| e.to_string()),
                Workload::Client | Workload::Memory => {
                    let limiter = if workload == Workload::Client {
                        &self.redis
                    } else {
                        &self.memory
                    };
                    match limiter.check(key, &self.policy).await {
                        Ok(decision) => {
                            let expected = if workload == Workload::Client {
                                Source::Server
                            } else {
                                Source::Memory
                            };
                            if decision.source != expected {
                                count.not_from_server += 1;
                            }
                            Ok(Some(decision.allowed))
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
            };
            match result {
                Ok(allowed) => {
                    count.ops += 1;
                    count
                        .latencies_us
                        .push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                    count.allowed += u64::from(allowed == Some(true));
                }
                Err(error) => {
                    count.errors += 1;
                    count.first_error.get_or_insert(error);
                }
            }
        }
        count
    }

    /// `tasks` concurrent tasks running `workload` for `length`: decisions per second.
    async fn measure(&self, workload: Workload, tasks: usize, length: Duration) -> Sample {
        let started = Instant::now();
        let deadline = started + length;
        let handles: Vec<_> = (0..tasks)
            .map(|task| {
                let seed = 0x9E37_79B9_7F4A_7C15_u64.wrapping_mul(task as u64 + 1)
                    ^ started.elapsed().as_nanos() as u64;
                tokio::spawn(self.clone().task(workload, seed, deadline))
            })
            .collect();
        let mut total = Count::default();
        for handle in handles {
            total.add(handle.await.expect("a bench task panicked"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        Sample {
            rate: total.ops as f64 / elapsed,
            allowed: (workload != Workload::Incr)
                .then(|| total.allowed as f64 / (total.ops.max(1)) as f64),
            p50_us: percentile(&mut total.latencies_us, 0.50),
            p99_us: percentile(&mut total.latencies_us, 0.99),
            count: total,
        }
    }
}

/// One measurement.
struct Sample {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    allowed: Option<f64>,
    count: Count,
}

fn main() {
    if !env::args().any(|arg| arg == "--bench") {
        println!("client benchmark: run it with `cargo bench --bench client` (skipped)");
        return;
    }
    let rounds: usize = env_number("REDLIMIT_BENCH_ROUNDS", 11).max(1);
    let length = Duration::from_millis(env_number("REDLIMIT_BENCH_MS", 500).max(100));
    let module = redlimit_test_support::release_module_path();
    let servers = available_servers();
    if servers.is_empty() {
        println!("no server found: run scripts/install-deps.sh (or check REDLIMIT_SERVERS)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let workers = runtime.metrics().num_workers();

    println!("# redlimit client benchmark\n");
    println!(
        "- date (UTC): {}",
        redlimit_test_support::shell_line("date", &["-u", "+%Y-%m-%d %H:%M"])
    );
    println!("- command: `cargo bench --bench client`");
    println!("- module: {}", module.display());
    println!(
        "- work tree: commit {}",
        redlimit_test_support::shell_line("git", &["rev-parse", "--short", "HEAD"])
    );
    println!(
        "- machine: {} CPUs (shared with the server and with other work), load average at start: {}",
        thread::available_parallelism().map_or(0, usize::from),
        redlimit_test_support::load_average()
    );
    println!(
        "- tokio multi-thread runtime, {workers} workers; one multiplexed connection (RESP2); \
         {} ms per measurement, {rounds} rounds, interleaved; {KEYSPACE} random keys per workload",
        length.as_millis()
    );

    let mut tables = Vec::new();
    for binary in &servers {
        eprintln!("== {}", binary.name());
        tables.push(runtime.block_on(bench_server(binary, &module, rounds, length)));
    }
    println!(
        "- load average at end: {}\n",
        redlimit_test_support::load_average()
    );
    println!(
        "| server | workload | tasks | decisions/s (median) | ratio to INCR (median) | ratio min–max | p50 µs | p99 µs | allowed | errors |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for table in &tables {
        for row in table {
            println!("{row}");
        }
    }
}

async fn bench_server(
    binary: &ServerBinary,
    module: &std::path::Path,
    rounds: usize,
    length: Duration,
) -> Vec<String> {
    let server = ServerBuilder::new(binary).module(module).start();
    let version = server_version(&mut server.connection(), binary);
    let connection = server
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("{}: cannot connect: {e}", binary.name()));
    let redis = RateLimiter::builder(Backend::connection(connection.clone()))
        .timeout(Duration::from_secs(1))
        .on_failure(FailurePolicy::Error)
        .build()
        .expect("a valid limiter");
    let bench = Bench {
        connection,
        redis,
        memory: RateLimiter::memory(),
        policy: Policy::token_bucket(100, 10, 1_000).expect("a valid policy"),
        keys: Arc::new(
            Workload::ALL
                .iter()
                .map(|w| {
                    (0..KEYSPACE)
                        .map(|i| format!("{}:{i}", w.prefix()))
                        .collect()
                })
                .collect(),
        ),
    };
    // Warm-up, not recorded: connections, allocator, keyspaces.
    for workload in Workload::ALL {
        for tasks in TASKS {
            bench
                .measure(workload, tasks, Duration::from_millis(300))
                .await;
        }
    }
    // samples[workload][tasks index] = one sample per round.
    let mut samples: Vec<Vec<Vec<Sample>>> = Workload::ALL
        .iter()
        .map(|_| TASKS.iter().map(|_| Vec::new()).collect())
        .collect();
    for round in 0..rounds {
        for (t, &tasks) in TASKS.iter().enumerate() {
            for (w, &workload) in Workload::ALL.iter().enumerate() {
                let sample = bench.measure(workload, tasks, length).await;
                eprintln!(
                    "{} round {} tasks {tasks:>2} {:<58} {:>9.0}/s{}",
                    binary.name(),
                    round + 1,
                    workload.label(),
                    sample.rate,
                    if sample.count.errors > 0 {
                        format!(
                            " ({} errors, first: {})",
                            sample.count.errors,
                            sample.count.first_error.as_deref().unwrap_or("")
                        )
                    } else {
                        String::new()
                    }
                );
                samples[w][t].push(sample);
            }
        }
    }
    let mut rows = Vec::new();
    for (t, &tasks) in TASKS.iter().enumerate() {
        for (w, &workload) in Workload::ALL.iter().enumerate() {
            let mine = &samples[w][t];
            let rates: Vec<f64> = mine.iter().map(|s| s.rate).collect();
            let ratios: Vec<f64> = mine
                .iter()
                .zip(&samples[0][t])
                .map(|(s, incr)| s.rate / incr.rate)
                .collect();
            let allowed: Vec<f64> = mine.iter().filter_map(|s| s.allowed).collect();
            let errors: u64 = mine.iter().map(|s| s.count.errors).sum();
            let not_from_server: u64 = mine.iter().map(|s| s.count.not_from_server).sum();
            let (low, high) = min_max(&ratios);
            let allowed = if allowed.is_empty() {
                "–".to_owned()
            } else {
                format!("{:.0}%", median(&allowed) * 100.0)
            };
            let errors = if not_from_server > 0 {
                format!("{errors} ({not_from_server} not from the server)")
            } else {
                errors.to_string()
            };
            rows.push(format!(
                "| {version} | {} | {tasks} | {:.0} | {:.2}× | {low:.2}–{high:.2} | {:.0} | {:.0} | {allowed} | {errors} |",
                workload.label(),
                median(&rates),
                median(&ratios),
                median(&mine.iter().map(|s| s.p50_us).collect::<Vec<_>>()),
                median(&mine.iter().map(|s| s.p99_us).collect::<Vec<_>>()),
            ));
        }
    }
    rows
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    match env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// The `q` quantile of `values` (sorted in place), in microseconds.
fn percentile(values: &mut [u32], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_unstable();
    let index = ((values.len() - 1) as f64 * q).round() as usize;
    f64::from(values[index])
}

/// `redis-8.2 (8.2.3)`: the flavor and the version the server reports.
fn server_version(con: &mut redis::Connection, binary: &ServerBinary) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(con)
        .unwrap_or_default();
    let field = |name: &str| {
        info.lines().find_map(|line| {
            let (field, value) = line.split_once(':')?;
            (field == name).then(|| value.trim().to_owned())
        })
    };
    let version = field("valkey_version")
        .or_else(|| field("redis_version"))
        .unwrap_or_else(|| "?".into());
    format!("{} ({version})", binary.name())
}
