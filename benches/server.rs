//! Server benchmark: the `RL.*` commands on real servers, against `INCR` and an empty
//! `EVALSHA` measured in the same run.
//!
//! ```text
//! cargo bench --bench server
//! ```
//!
//! The bench builds the module itself first (`cargo build --release -p redlimit-module`,
//! with `$CARGO` if set, else `cargo`) and loads `target/release/libredlimit.so`; set
//! `REDLIMIT_MODULE=/path/to/libredlimit.so` to benchmark another build instead (nothing
//! is built then). It needs `redis-benchmark` (from `redis-tools`; `$REDIS_BENCHMARK`
//! names another binary) and the servers of `scripts/install-deps.sh`.
//!
//! For each server found (`REDLIMIT_SERVERS=redis-8.2,valkey-9.1` restricts them), it
//! starts one server with the module and persistence off, and:
//!
//! 1. **Throughput.** `redis-benchmark -c 50 -r 100000 -n <requests> -P <1|16> --csv`
//!    for `INCR k:__rand_int__` (the baseline), `RL.TOKENBUCKET tb:__rand_int__ 100 10
//!    1000`, `RL.THROTTLE th:__rand_int__ 15 30 60` and `EVALSHA` of an empty script
//!    (a second reference), plus two rows that explain the token bucket's figure (see
//!    [`workloads`]). The runs are interleaved — INCR, TB, TH, EVALSHA, ..., INCR, TB,
//!    ... — for several rounds, and each command's rate is divided by the INCR rate of
//!    the same round and pipeline depth; the table reports the medians over the rounds.
//!    Before each run `CONFIG RESETSTAT`, after it `INFO commandstats`: the server-side
//!    µs per call of that command alone (no network, no parsing by the client); the
//!    share of `RL.*` calls allowed (`INFO redlimit`); and `expired_keys` per call. After
//!    each run the bench waits until the server stops expiring keys, so that a run's
//!    short-lived keys are reaped before the next run, not during it.
//! 2. **Bytes per key.** On a second, fresh server: `FLUSHALL`, `used_memory`, then
//!    100,000 keys of one kind written through pipelines, `used_memory` again; the
//!    difference divided by the number of keys, and `MEMORY USAGE` of one key. Kinds: a
//!    token bucket, a throttle, and as references `SET key <19 digits> PX 60000` (what
//!    redis-cell stores per key) and `INCR key`.
//!
//! It prints Markdown tables that `docs/benchmarks.md` takes as they are.
//!
//! Environment: `REDLIMIT_BENCH_ROUNDS` (default 3), `REDLIMIT_BENCH_REQUESTS` (requests
//! per `redis-benchmark` run, default 200000), `REDLIMIT_BENCH_KEYS` (keys per kind for
//! bytes per key, default 100000), `REDLIMIT_SERVERS`, `REDLIMIT_MODULE`.
//!
//! Run without `--bench` (as `cargo test --benches` does) it only says how to run it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use redlimit_test_support::{
    Server, ServerBinary, ServerBuilder, available_servers, set_clock_offset,
};

/// Concurrent connections of `redis-benchmark`.
const CLIENTS: u32 = 50;
/// Size of the random keyspace (`-r`).
const KEYSPACE: u32 = 100_000;
/// Pipeline depths measured.
const PIPELINES: [u32; 2] = [1, 16];
/// Commands per pipeline when filling the keyspace for bytes per key.
const FILL_BATCH: usize = 1_000;
/// A 19-digit integer: what redis-cell keeps in a string key (its TAT in ns).
const NINETEEN_DIGITS: &str = "1763927000123456789";

fn main() {
    if !env::args().any(|arg| arg == "--bench") {
        println!("server benchmark: run it with `cargo bench --bench server` (skipped)");
        return;
    }
    let settings = Settings::from_env();
    let module = module_for_bench();
    let servers = available_servers();
    if servers.is_empty() {
        println!("no server found: run scripts/install-deps.sh (or check REDLIMIT_SERVERS)");
        return;
    }

    println!("# redlimit server benchmark\n");
    println!(
        "- date (UTC): {}",
        shell_line("date", &["-u", "+%Y-%m-%d %H:%M"])
    );
    println!("- module: {}", module.display());
    println!("- work tree: commit {}", commit());
    println!(
        "- machine: {} CPUs, load average at start: {}",
        thread::available_parallelism().map_or(0, usize::from),
        load_average()
    );
    println!(
        "- redis-benchmark -c {CLIENTS} -r {KEYSPACE} -n {} -P 1|16; {} rounds, interleaved",
        settings.requests, settings.rounds
    );

    let mut throughput = Vec::new();
    let mut memory = Vec::new();
    for binary in &servers {
        eprintln!("== {}", binary.name());
        throughput.push(measure_throughput(binary, &module, &settings));
        memory.push(measure_memory(binary, &module, settings.keys));
    }

    println!("- load average at end: {}\n", load_average());
    println!(
        "## Throughput (ratio = median over rounds of req/s ÷ INCR req/s in the same round)\n"
    );
    println!(
        "| server | command | pipeline | req/s (median) | ratio to INCR (median) | ratio min–max | usec_per_call (median) | allowed | keys expired per call |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for report in &throughput {
        report.print_rows();
    }
    println!(
        "\n## Bytes per key ({} keys of each kind; used_memory delta ÷ keys)\n",
        settings.keys
    );
    println!("| server | kind | written with | bytes per key | MEMORY USAGE of one key |");
    println!("|---|---|---|---:|---:|");
    for rows in &memory {
        for row in rows {
            println!(
                "| {} | {} | `{}` | {:.1} | {} |",
                row.server, row.kind, row.command, row.bytes_per_key, row.memory_usage
            );
        }
    }
}

/// Knobs read from the environment.
struct Settings {
    rounds: usize,
    requests: u64,
    keys: usize,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            rounds: env_number("REDLIMIT_BENCH_ROUNDS", 3).max(1),
            requests: env_number("REDLIMIT_BENCH_REQUESTS", 200_000).max(1),
            keys: env_number("REDLIMIT_BENCH_KEYS", 100_000).max(1),
        }
    }
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

/// The module to load: `$REDLIMIT_MODULE` as it is, else a fresh release build.
fn module_for_bench() -> PathBuf {
    if let Some(path) = env::var_os("REDLIMIT_MODULE") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "REDLIMIT_MODULE={} does not exist",
            path.display()
        );
        return path;
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the module: cargo build --release -p redlimit-module");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "redlimit-module"])
        .current_dir(repo_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    assert!(
        status.success(),
        "cargo build --release -p redlimit-module failed"
    );
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("release").join("libredlimit.so");
    assert!(path.is_file(), "the build left no {}", path.display());
    path
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start(binary: &ServerBinary, module: &Path) -> Server {
    ServerBuilder::new(binary).module(module).start()
}

// ---------------------------------------------------------------------------------------
// Throughput

/// One command line driven by `redis-benchmark`.
struct Workload {
    /// How the tables name it.
    label: String,
    /// Its `INFO commandstats` name (`cmdstat_<stat>`).
    stat: &'static str,
    /// Its `INFO redlimit` counters (`redlimit_<name>_allowed`), for `RL.*` commands.
    counter: Option<&'static str>,
    /// The command and its arguments, `__rand_int__` in the key.
    argv: Vec<String>,
}

/// The measured commands; the first one is the baseline the others are divided by.
///
/// The last two are references that explain the token bucket's figure: its keys go
/// idle, and so expire, 100 ms after a call, so at these rates most calls create a key
/// that the server deletes again shortly after. `SET ... PX 100` pays the same churn
/// with a plain string; the long-lived token bucket pays none.
fn workloads(empty_script_sha: &str) -> Vec<Workload> {
    let workload = |label: &str, stat, counter, argv: &[&str]| Workload {
        label: label.to_owned(),
        stat,
        counter,
        argv: argv.iter().map(|&arg| arg.to_owned()).collect(),
    };
    vec![
        workload("INCR", "incr", None, &["INCR", "k:__rand_int__"]),
        workload(
            "RL.TOKENBUCKET 100 10 1000",
            "rl.tokenbucket",
            Some("tokenbucket"),
            &["RL.TOKENBUCKET", "tb:__rand_int__", "100", "10", "1000"],
        ),
        workload(
            "RL.THROTTLE 15 30 60",
            "rl.throttle",
            Some("throttle"),
            &["RL.THROTTLE", "th:__rand_int__", "15", "30", "60"],
        ),
        workload(
            "EVALSHA (empty script)",
            "evalsha",
            None,
            &["EVALSHA", empty_script_sha, "1", "ev:__rand_int__"],
        ),
        workload(
            "RL.SLIDING 100 60000 (exact)",
            "rl.sliding",
            Some("sliding"),
            &["RL.SLIDING", "sl:__rand_int__", "100", "60000"],
        ),
        workload(
            "RL.SLIDING 100 60000 APPROX",
            "rl.sliding",
            Some("sliding"),
            &["RL.SLIDING", "sa:__rand_int__", "100", "60000", "APPROX"],
        ),
        workload(
            "RL.FIXED 100 60000",
            "rl.fixed",
            Some("fixed"),
            &["RL.FIXED", "fx:__rand_int__", "100", "60000"],
        ),
        workload(
            "RL.ALL 2 keys: SLIDING 10 60000 + FIXED 100 3600000",
            "rl.all",
            Some("all"),
            &[
                "RL.ALL",
                "2",
                "{a__rand_int__}m",
                "{a__rand_int__}h",
                "SLIDING",
                "10",
                "60000",
                "FIXED",
                "100",
                "3600000",
            ],
        ),
        workload(
            "RL.ACQUIRE 10 60000 (one lease per call)",
            "rl.acquire",
            Some("acquire"),
            &[
                "RL.ACQUIRE",
                "ls:__rand_int__",
                "10",
                "60000",
                "__rand_int__",
            ],
        ),
        workload(
            "ref: RL.TOKENBUCKET 1000000 1 60000 (keys stay)",
            "rl.tokenbucket",
            Some("tokenbucket"),
            &[
                "RL.TOKENBUCKET",
                "tbl:__rand_int__",
                "1000000",
                "1",
                "60000",
            ],
        ),
        workload(
            "ref: SET 1 PX 100 (same churn)",
            "set",
            None,
            &["SET", "s:__rand_int__", "1", "PX", "100"],
        ),
    ]
}

/// One `redis-benchmark` run.
struct Sample {
    round: usize,
    pipeline: u32,
    workload: usize,
    requests_per_second: f64,
    usec_per_call: f64,
    /// Share of the calls allowed, for `RL.*` commands.
    allowed: Option<f64>,
    /// Keys the server expired (lazily or actively) per call, until it went quiet.
    expired_per_call: f64,
}

/// Everything measured on one server.
struct ThroughputReport {
    server: String,
    workloads: Vec<Workload>,
    samples: Vec<Sample>,
}

fn measure_throughput(
    binary: &ServerBinary,
    module: &Path,
    settings: &Settings,
) -> ThroughputReport {
    let server = start(binary, module);
    let mut con = server.connection();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("")
        .query(&mut con)
        .unwrap_or_else(|e| panic!("{}: SCRIPT LOAD failed: {e}", binary.name()));
    let workloads = workloads(&sha);
    for workload in &workloads {
        check_command_works(&mut con, workload, binary.name());
    }
    // Warm-up, not recorded: fills the keyspaces and the allocator's caches.
    for workload in &workloads {
        redis_benchmark(
            server.port(),
            16,
            (settings.requests / 4).max(1),
            &workload.argv,
        );
        wait_for_expiry_to_settle(&mut con);
    }

    let mut samples = Vec::new();
    for round in 0..settings.rounds {
        for pipeline in PIPELINES {
            for (index, workload) in workloads.iter().enumerate() {
                let counters_before = workload.counter.map(|name| decisions(&mut con, name));
                let () = redis::cmd("CONFIG")
                    .arg("RESETSTAT")
                    .query(&mut con)
                    .unwrap_or_else(|e| panic!("CONFIG RESETSTAT failed: {e}"));
                let requests_per_second =
                    redis_benchmark(server.port(), pipeline, settings.requests, &workload.argv);
                let stats = command_stats(&mut con, workload.stat);
                let expired = wait_for_expiry_to_settle(&mut con);
                assert!(
                    stats.failed_calls == 0 && stats.rejected_calls == 0,
                    "{}: {} answered errors during the benchmark ({} failed, {} rejected)",
                    binary.name(),
                    workload.label,
                    stats.failed_calls,
                    stats.rejected_calls
                );
                assert!(
                    stats.calls >= settings.requests,
                    "{}: {} ran {} times, expected {}",
                    binary.name(),
                    workload.label,
                    stats.calls,
                    settings.requests
                );
                let usec_per_call = stats.usec as f64 / stats.calls as f64;
                let allowed = workload.counter.zip(counters_before).map(|(name, before)| {
                    let after = decisions(&mut con, name);
                    let allowed = after.0.saturating_sub(before.0) as f64;
                    let denied = after.1.saturating_sub(before.1) as f64;
                    allowed / (allowed + denied).max(1.0)
                });
                let expired_per_call = expired as f64 / settings.requests as f64;
                eprintln!(
                    "{} round {} -P {pipeline:>2} {:<48} {requests_per_second:>9.0} req/s {usec_per_call:>5.2} µs/call{}, {expired_per_call:.2} expired/call",
                    binary.name(),
                    round + 1,
                    workload.label,
                    allowed.map_or(String::new(), |a| format!(", {:.0}% allowed", a * 100.0)),
                );
                samples.push(Sample {
                    round,
                    pipeline,
                    workload: index,
                    requests_per_second,
                    usec_per_call,
                    allowed,
                    expired_per_call,
                });
            }
        }
    }
    ThroughputReport {
        server: server_version(&mut con, binary),
        workloads,
        samples,
    }
}

/// One call through a normal client must answer a value, not an error: otherwise
/// `redis-benchmark` would happily count error replies as requests.
fn check_command_works(con: &mut redis::Connection, workload: &Workload, server: &str) {
    let mut command = redis::cmd(&workload.argv[0]);
    for arg in &workload.argv[1..] {
        command.arg(arg.replace("__rand_int__", "check"));
    }
    if let Err(error) = command.query::<redis::Value>(con) {
        panic!("{server}: {} fails: {error}", workload.argv.join(" "));
    }
}

/// `(allowed, denied)` so far of one `RL.*` command, from `INFO redlimit`.
fn decisions(con: &mut redis::Connection, name: &str) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("redlimit")
        .query(con)
        .unwrap_or_else(|e| panic!("INFO redlimit failed: {e}"));
    let field = |suffix: &str| {
        info_field(&info, &format!("redlimit_{name}_{suffix}"))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("allowed"), field("denied"))
}

/// Waits (at most 5 s) until the server stops expiring keys, so that keys a run left to
/// expire are reaped before the next run starts, not during it. Returns `expired_keys`
/// since the last `CONFIG RESETSTAT`.
fn wait_for_expiry_to_settle(con: &mut redis::Connection) -> u64 {
    let expired = |con: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(con)
            .unwrap_or_else(|e| panic!("INFO stats failed: {e}"));
        info_field(&info, "expired_keys")
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = expired(con);
    thread::sleep(Duration::from_millis(150));
    loop {
        thread::sleep(Duration::from_millis(150));
        let now = expired(con);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Runs `redis-benchmark` once and returns its requests per second.
fn redis_benchmark(port: u16, pipeline: u32, requests: u64, argv: &[String]) -> f64 {
    let program = env::var_os("REDIS_BENCHMARK").unwrap_or_else(|| "redis-benchmark".into());
    let output = Command::new(&program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-n", &requests.to_string(), "-c", &CLIENTS.to_string()])
        .args(["-r", &KEYSPACE.to_string(), "-P", &pipeline.to_string()])
        .arg("--csv")
        .args(argv)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}; install redis-tools",
                program.to_string_lossy()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "redis-benchmark failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse_requests_per_second(&stdout).unwrap_or_else(|| {
        panic!("no requests-per-second figure in redis-benchmark's output:\n{stdout}")
    })
}

/// Reads the `rps` column of `--csv` output; falls back to the `-q` form
/// (`NAME: 123.45 requests per second`).
fn parse_requests_per_second(output: &str) -> Option<f64> {
    let rows: Vec<Vec<String>> = output.lines().map(csv_fields).collect();
    for (index, header) in rows.iter().enumerate() {
        let Some(column) = header.iter().position(|field| field == "rps") else {
            continue;
        };
        let value = rows[index + 1..]
            .iter()
            .find_map(|row| row.get(column)?.parse::<f64>().ok());
        if value.is_some() {
            return value;
        }
    }
    output.lines().find_map(|line| {
        let before = line.split(" requests per second").next()?;
        if before.len() == line.len() {
            return None;
        }
        before.rsplit([' ', ':']).next()?.parse().ok()
    })
}

/// The fields of one CSV line (double quotes, `""` inside quotes).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The counters of one `cmdstat_<name>` line.
#[derive(Default)]
struct CommandStats {
    calls: u64,
    usec: u64,
    failed_calls: u64,
    rejected_calls: u64,
}

fn command_stats(con: &mut redis::Connection, name: &str) -> CommandStats {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .unwrap_or_else(|e| panic!("INFO commandstats failed: {e}"));
    let prefix = format!("cmdstat_{name}:");
    let mut stats = CommandStats::default();
    let Some(line) = info.lines().find_map(|line| line.strip_prefix(&prefix)) else {
        return stats;
    };
    for pair in line.trim().split(',') {
        let Some((field, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.parse().unwrap_or(0);
        match field {
            "calls" => stats.calls = value,
            "usec" => stats.usec = value,
            "failed_calls" => stats.failed_calls = value,
            "rejected_calls" => stats.rejected_calls = value,
            _ => {}
        }
    }
    stats
}

impl ThroughputReport {
    fn print_rows(&self) {
        for pipeline in PIPELINES {
            for (index, workload) in self.workloads.iter().enumerate() {
                let samples: Vec<&Sample> = self
                    .samples
                    .iter()
                    .filter(|s| s.pipeline == pipeline && s.workload == index)
                    .collect();
                let ratios: Vec<f64> = samples
                    .iter()
                    .filter_map(|s| {
                        Some(s.requests_per_second / self.incr_rate(s.round, pipeline)?)
                    })
                    .collect();
                let rates: Vec<f64> = samples.iter().map(|s| s.requests_per_second).collect();
                let usecs: Vec<f64> = samples.iter().map(|s| s.usec_per_call).collect();
                let allowed: Vec<f64> = samples.iter().filter_map(|s| s.allowed).collect();
                let expired: Vec<f64> = samples.iter().map(|s| s.expired_per_call).collect();
                let (low, high) = min_max(&ratios);
                let allowed = if allowed.is_empty() {
                    "–".to_owned()
                } else {
                    format!("{:.0}%", median(&allowed) * 100.0)
                };
                println!(
                    "| {} | {} | {pipeline} | {:.0} | {:.2}× | {low:.2}–{high:.2} | {:.2} | {allowed} | {:.2} |",
                    self.server,
                    workload.label,
                    median(&rates),
                    median(&ratios),
                    median(&usecs),
                    median(&expired),
                );
            }
        }
    }

    /// The INCR rate of one round at one pipeline depth.
    fn incr_rate(&self, round: usize, pipeline: u32) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.round == round && s.pipeline == pipeline && s.workload == 0)
            .map(|s| s.requests_per_second)
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
            (low.min(v), high.max(v))
        })
}

// ---------------------------------------------------------------------------------------
// Bytes per key

/// One kind of key and how to write key number `i`.
struct KeyKind {
    kind: &'static str,
    /// The command as the table shows it.
    command: &'static str,
    write: fn(&mut redis::Pipeline, &str),
    /// Calls per key, `SPACING_MS` apart on the module's test clock (1: one call).
    calls_per_key: u64,
}

/// Time between two calls on one key when a kind makes several (100 in a minute).
const SPACING_MS: u64 = 600;

/// Policies slow enough that no key expires while the keyspace is being filled and
/// measured (the throughput policies' keys go idle, and vanish, within 2 s).
fn key_kinds() -> [KeyKind; 8] {
    [
        KeyKind {
            kind: "token bucket",
            command: "RL.TOKENBUCKET key 100 1 60000",
            write: |pipe, key| {
                pipe.cmd("RL.TOKENBUCKET")
                    .arg(key)
                    .arg(100)
                    .arg(1)
                    .arg(60_000)
                    .ignore();
            },
            calls_per_key: 1,
        },
        KeyKind {
            kind: "throttle",
            command: "RL.THROTTLE key 15 1 60",
            write: |pipe, key| {
                pipe.cmd("RL.THROTTLE")
                    .arg(key)
                    .arg(15)
                    .arg(1)
                    .arg(60)
                    .ignore();
            },
            calls_per_key: 1,
        },
        KeyKind {
            kind: "sliding log, 100 calls in 60 s",
            command: "RL.SLIDING key 100 60000, 100 times 600 ms apart",
            write: |pipe, key| {
                pipe.cmd("RL.SLIDING")
                    .arg(key)
                    .arg(100)
                    .arg(60_000)
                    .ignore();
            },
            calls_per_key: 100,
        },
        KeyKind {
            kind: "sliding APPROX",
            command: "RL.SLIDING key 100 60000 APPROX",
            write: |pipe, key| {
                pipe.cmd("RL.SLIDING")
                    .arg(key)
                    .arg(100)
                    .arg(60_000)
                    .arg("APPROX")
                    .ignore();
            },
            calls_per_key: 1,
        },
        KeyKind {
            kind: "fixed window",
            command: "RL.FIXED key 100 3600000",
            write: |pipe, key| {
                pipe.cmd("RL.FIXED")
                    .arg(key)
                    .arg(100)
                    .arg(3_600_000)
                    .ignore();
            },
            calls_per_key: 1,
        },
        KeyKind {
            kind: "lease key, one 8-byte holder",
            command: "RL.ACQUIRE key 10 60000 holder-1",
            write: |pipe, key| {
                pipe.cmd("RL.ACQUIRE")
                    .arg(key)
                    .arg(10)
                    .arg(60_000)
                    .arg("holder-1")
                    .ignore();
            },
            calls_per_key: 1,
        },
        KeyKind {
            kind: "string, 19 digits, TTL (redis-cell)",
            command: "SET key 1763927000123456789 PX 60000",
            write: |pipe, key| {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(NINETEEN_DIGITS)
                    .arg("PX")
                    .arg(60_000)
                    .ignore();
            },
            calls_per_key: 1,
        },
        KeyKind {
            kind: "INCR counter, no TTL",
            command: "INCR key",
            write: |pipe, key| {
                pipe.cmd("INCR").arg(key).ignore();
            },
            calls_per_key: 1,
        },
    ]
}

/// One row of the bytes-per-key table.
struct MemoryRow {
    server: String,
    kind: &'static str,
    command: &'static str,
    bytes_per_key: f64,
    memory_usage: i64,
}

fn measure_memory(binary: &ServerBinary, module: &Path, keys: usize) -> Vec<MemoryRow> {
    let server = start(binary, module);
    let mut con = server.connection();
    let name = server_version(&mut con, binary);
    let mut rows = Vec::new();
    for kind in key_kinds() {
        let () = redis::cmd("FLUSHALL")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("FLUSHALL failed: {e}"));
        settle();
        let before = used_memory(&mut con);
        let started = Instant::now();
        // Kinds with many calls per key fill a tenth of the keys (the same calls in all).
        let keys = if kind.calls_per_key > 1 {
            keys / 10
        } else {
            keys
        };
        let names: Vec<String> = (0..keys).map(|i| format!("key:{i:012}")).collect();
        for call in 0..kind.calls_per_key {
            set_clock_offset(&mut con, call * SPACING_MS);
            for batch in names.chunks(FILL_BATCH) {
                let mut pipe = redis::pipe();
                for key in batch {
                    (kind.write)(&mut pipe, key);
                }
                let () = pipe.query(&mut con).unwrap_or_else(|e| {
                    panic!("{}: writing {} keys failed: {e}", binary.name(), kind.kind)
                });
            }
        }
        set_clock_offset(&mut con, 0);
        settle();
        let after = used_memory(&mut con);
        let count: usize = redis::cmd("DBSIZE")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("DBSIZE failed: {e}"));
        assert_eq!(
            count,
            keys,
            "{}: {} keys expired or went missing while measuring (filled in {:?})",
            binary.name(),
            kind.kind,
            started.elapsed()
        );
        let memory_usage: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&names[0])
            .query(&mut con)
            .unwrap_or_else(|e| panic!("MEMORY USAGE failed: {e}"));
        let bytes_per_key = (after as f64 - before as f64) / keys as f64;
        eprintln!(
            "{} {:<38} {bytes_per_key:>7.1} bytes/key, MEMORY USAGE {memory_usage}",
            binary.name(),
            kind.kind
        );
        rows.push(MemoryRow {
            server: name.clone(),
            kind: kind.kind,
            command: kind.command,
            bytes_per_key,
            memory_usage,
        });
    }
    rows
}

/// Lets the server finish incremental rehashing and free client buffers.
fn settle() {
    thread::sleep(Duration::from_millis(500));
}

fn used_memory(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(con)
        .unwrap_or_else(|e| panic!("INFO memory failed: {e}"));
    info_field(&info, "used_memory")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in INFO memory:\n{info}"))
}

// ---------------------------------------------------------------------------------------
// Context printed with the results

fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (field, value) = line.split_once(':')?;
        (field == name).then(|| value.trim())
    })
}

/// `redis-8.2 (8.2.3)`: the flavor and the version the server reports.
fn server_version(con: &mut redis::Connection, binary: &ServerBinary) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query(con)
        .unwrap_or_default();
    let version = info_field(&info, "valkey_version")
        .or_else(|| info_field(&info, "redis_version"))
        .unwrap_or("?");
    format!("{} ({version})", binary.name())
}

fn commit() -> String {
    let short = shell_line("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !shell_line("git", &["status", "--porcelain", "--", "core", "module"]).is_empty();
    if dirty {
        format!("{short}, core/ or module/ modified")
    } else {
        short
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

/// The first line a command prints, or "?".
fn shell_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_else(|| "?".into())
}
