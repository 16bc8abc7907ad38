//! Server benchmark: the `RL.*` commands on real servers, against `INCR`, a floor module
//! (the module-API minimum a limiter command pays), redis-cell and our Lua equivalents,
//! all loaded in one server and measured in the same run.
//!
//! ```text
//! cargo bench --bench server
//! ```
//!
//! The bench builds the module itself first (`cargo build --release -p redlimit-module`,
//! with `$CARGO` if set, else `cargo`) and loads `target/release/libredlimit.so`; set
//! `REDLIMIT_MODULE=/path/to/libredlimit.so` to benchmark another build instead (nothing
//! is built then). It needs `redis-benchmark` (from `redis-tools`; `$REDIS_BENCHMARK`
//! names another binary), `taskset` (util-linux) and the servers of
//! `scripts/install-deps.sh`.
//!
//! **The floor module** (`floor_module/lib.rs`, see [`floor`]) is built by the bench as
//! its own Cargo project under `target/bench-floor/` (`redis-module` 2.0.8, like ours;
//! `$REDLIMIT_FLOOR_SO` names another build). Its `FLOOR.CALL key a b ttl_ms` parses
//! three integers, opens the key for writing, reads or creates a 24-byte module-type
//! value and modifies it in place, sets the absolute expiry, replicates the 24 bytes and
//! replies 5 integers: what every limiter command must do, and nothing else. Each row's
//! server-side µs per call is divided by the floor's of the same round.
//!
//! **redis-cell** is loaded next to ours when `REDIS_CELL_SO` names a build, or else
//! when one is found at `/tmp/redis-cell/target/release/libredis_cell.so`. Build it
//! outside this repository (never commit its code):
//!
//! ```text
//! git clone https://github.com/brandur/redis-cell /tmp/redis-cell
//! cd /tmp/redis-cell && git checkout v0.5.0 && cargo build --release
//! ```
//!
//! For each server found (`REDLIMIT_SERVERS=redis-8.2,valkey-9.1` restricts them):
//!
//! 1. **Throughput** ([`throughput`]). One server with redlimit, the floor module and
//!    redis-cell, persistence off. With at least 2 CPUs the server (all its threads) is
//!    pinned to the first allowed CPU and `redis-benchmark` to the second (`taskset`),
//!    so that they do not compete for one core; the output says whether it was.
//!    `redis-benchmark -c 50 -r 100000 -P <1|16> --csv` for every row of
//!    [`throughput::workloads`]: INCR on random keys (the baseline), the floor, every
//!    `RL.*` limiting command, `CL.THROTTLE`, our Lua equivalents of the common scripts,
//!    an empty `EVALSHA`, reference rows, and rows on one hot key (divided by INCR on one
//!    hot key). A pipeline-16 figure sends at least 1,000,000 requests and lasts at least
//!    2 s (at the rate its warm-up reached); a pipeline-1 figure a tenth of the requests
//!    and the same 2 s. The rows are interleaved for 3 rounds; each rate is divided by
//!    its baseline's rate of the same round, each exec µs by the floor's of the same
//!    round, and the tables report medians over the rounds. Before each run `CONFIG
//!    RESETSTAT`, after it `INFO commandstats`: the server-side µs per call; the share of
//!    `RL.*` calls allowed (`INFO redlimit`); `expired_keys` per call. After each run the
//!    bench waits until the server stops expiring keys.
//! 2. **Bytes per key** ([`memory`]). On a second, fresh server: `used_memory` before and
//!    after 100,000 keys of one kind, for every limiter kind, the Lua scripts' keys, and
//!    references (`SET key <19 digits> PX 60000`, what redis-cell stores, `INCR key`).
//! 3. **Propagated bytes** ([`propagation`]). On a primary with `appendonly yes` and one
//!    replica: AOF and replication bytes per allowed, denied, `PEEK` and `COST 0` call.
//!
//! It prints Markdown tables ([`report`]), writes them between the
//! `<!-- server-bench:start -->` and `<!-- server-bench:end -->` markers of
//! `docs/benchmarks.md`, and draws `docs/benchmarks-throughput.svg`
//! (`REDLIMIT_BENCH_DOCS=0`: print only).
//!
//! Environment: `REDLIMIT_BENCH_ROUNDS` (default 3), `REDLIMIT_BENCH_REQUESTS` (requests
//! per pipeline-16 figure, default 1000000), `REDLIMIT_BENCH_SECONDS` (least duration of
//! a figure, default 2; 0: none), `REDLIMIT_BENCH_KEYS` (keys per kind for bytes per
//! key, default 100000), `REDLIMIT_BENCH_PIN=0` (no `taskset`), `REDLIMIT_SERVERS`,
//! `REDLIMIT_MODULE`, `REDLIMIT_FLOOR_SO`, `REDIS_CELL_SO`, `REDLIMIT_BENCH_DOCS`,
//! `REDLIMIT_BENCH_ROWS` (e.g. `scripts:`: only the throughput rows whose label contains
//! one of its comma-separated parts, plus the references; a partial run, so use it with
//! `REDLIMIT_BENCH_DOCS=0`),
//! `REDLIMIT_BENCH_PROPAGATE=1` (servers with a save point: the module then propagates
//! every write, as on a server with replicas, AOF or snapshots; by default the servers
//! are cache-only and the module skips `RedisModule_Replicate`, while the floor module
//! always replicates). A
//! smoke run (seconds, not minutes; its figures measure noise):
//!
//! ```text
//! REDLIMIT_BENCH_REQUESTS=20000 REDLIMIT_BENCH_SECONDS=0 REDLIMIT_BENCH_ROUNDS=1 \
//!   REDLIMIT_BENCH_KEYS=10000 REDLIMIT_BENCH_DOCS=0 REDLIMIT_SERVERS=redis-8.2 \
//!   cargo bench --bench server
//! ```
//!
//! Run without `--bench` (as `cargo test --benches` does) it only says how to run it.

mod floor;
mod memory;
mod propagation;
mod report;
mod scripts;
mod throughput;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use redlimit_test_support::{Server, ServerBinary, ServerBuilder, available_servers};

/// Where another engineer's redis-cell build is looked for when `REDIS_CELL_SO` is unset.
const REDIS_CELL_DEFAULT: &str = "/tmp/redis-cell/target/release/libredis_cell.so";

fn main() {
    if !env::args().any(|arg| arg == "--bench") {
        println!("server benchmark: run it with `cargo bench --bench server` (skipped)");
        return;
    }
    let settings = Settings::from_env();
    let module = redlimit_test_support::release_module_path();
    let floor_module = floor::build();
    let servers = available_servers();
    if servers.is_empty() {
        println!("no server found: run scripts/install-deps.sh (or check REDLIMIT_SERVERS)");
        return;
    }

    let mut report = String::new();
    let mut line = |text: String| {
        println!("{text}");
        report.push_str(&text);
        report.push('\n');
    };
    line(format!("- started (UTC): {}", utc_now()));
    line(format!("- module: {}", module.display()));
    line(format!(
        "- floor module: {} (benches/server/floor_module/lib.rs)",
        floor_module.display()
    ));
    line(format!("- work tree: commit {}", commit()));
    line(format!(
        "- machine: {} CPUs, load average at start: {}",
        thread::available_parallelism().map_or(0, usize::from),
        redlimit_test_support::load_average()
    ));
    line(if settings.propagating {
        "- REDLIMIT_BENCH_PROPAGATE=1: servers have a save point, so RL.* writes are propagated (RedisModule_Replicate), as with replicas, AOF or RDB snapshots".to_owned()
    } else {
        "- cache-only servers (no save point, AOF or replica): RL.* writes skip RedisModule_Replicate; REDLIMIT_BENCH_PROPAGATE=1 measures the propagating path".to_owned()
    });
    line(match &settings.pinning {
        Some(pinning) => format!(
            "- pinned (taskset): the throughput server, all its threads, on CPU {}; redis-benchmark on CPU {}",
            pinning.server_cpu, pinning.generator_cpu
        ),
        None => format!(
            "- NOT pinned: server and redis-benchmark share the CPUs ({})",
            settings.unpinned_reason
        ),
    });
    line(format!(
        "- redis-benchmark -c {} -r {} --csv: -P 16 at least {} requests, -P 1 at least {}, each at least {} s; {} rounds, interleaved; medians",
        throughput::CLIENTS,
        throughput::KEYSPACE,
        settings.requests,
        (settings.requests / 10).max(1),
        settings.seconds,
        settings.rounds
    ));
    line(match &settings.redis_cell {
        Some(cell) => format!(
            "- redis-cell: {} ({})",
            cell.display(),
            settings.redis_cell_source
        ),
        None => format!(
            "- redis-cell: not found (no REDIS_CELL_SO, no {REDIS_CELL_DEFAULT}): no CL.THROTTLE rows"
        ),
    });

    let mut throughput = Vec::new();
    let mut memory = Vec::new();
    let mut propagation = Vec::new();
    for binary in &servers {
        eprintln!("== {}", binary.name());
        throughput.push(throughput::measure_throughput(
            binary,
            &module,
            &floor_module,
            &settings,
        ));
        memory.push(memory::measure_memory(binary, &module, &settings));
        propagation.push(propagation::measure_propagation(binary, &module, &settings));
    }

    line(format!(
        "- ended (UTC): {}, load average at end: {}\n",
        utc_now(),
        redlimit_test_support::load_average()
    ));
    let tables = [
        report::throughput_table(&throughput),
        report::reference_table(&throughput),
        report::memory_table(settings.keys, &memory),
        report::propagation_table(&propagation),
    ];
    for text in tables.into_iter().flatten() {
        line(text);
    }
    let svg = report::chart(&throughput);
    if settings.write_docs {
        report::write_docs(&report, &svg);
    }
}

/// Knobs read from the environment.
pub struct Settings {
    rounds: usize,
    /// Requests per pipeline-16 figure (a tenth at pipeline 1).
    requests: u64,
    /// Least duration of a figure, in seconds.
    seconds: f64,
    keys: usize,
    /// A built redis-cell module, loaded next to ours.
    redis_cell: Option<PathBuf>,
    /// Where `redis_cell` came from.
    redis_cell_source: &'static str,
    /// Where the throughput server and `redis-benchmark` run (`None`: not pinned).
    pinning: Option<Pinning>,
    /// Why there is no pinning.
    unpinned_reason: String,
    /// Write the results into `docs/` (`REDLIMIT_BENCH_DOCS=0`: print only).
    write_docs: bool,
    /// `REDLIMIT_BENCH_ROWS`: measure only the throughput rows whose label contains one
    /// of these comma-separated parts (and the references); `None`: every row.
    rows: Option<String>,
    /// Servers run with a save point (`REDLIMIT_BENCH_PROPAGATE=1`), so the module
    /// propagates every write as on a server with replicas, AOF or RDB snapshots.
    propagating: bool,
}

impl Settings {
    fn from_env() -> Self {
        let (redis_cell, redis_cell_source) = match env::var_os("REDIS_CELL_SO") {
            Some(path) => {
                let path = PathBuf::from(path);
                assert!(
                    path.is_file(),
                    "REDIS_CELL_SO={} does not exist",
                    path.display()
                );
                (Some(path), "REDIS_CELL_SO")
            }
            None => {
                let path = PathBuf::from(REDIS_CELL_DEFAULT);
                (path.is_file().then_some(path), "found at the default path")
            }
        };
        let (pinning, unpinned_reason) = if env::var("REDLIMIT_BENCH_PIN").is_ok_and(|v| v == "0") {
            (None, "REDLIMIT_BENCH_PIN=0".to_owned())
        } else {
            match Pinning::detect() {
                Ok(pinning) => (Some(pinning), String::new()),
                Err(reason) => (None, reason),
            }
        };
        Self {
            rounds: env_number("REDLIMIT_BENCH_ROUNDS", 3).max(1),
            requests: env_number("REDLIMIT_BENCH_REQUESTS", 1_000_000).max(1),
            seconds: env_number("REDLIMIT_BENCH_SECONDS", 2.0_f64).max(0.0),
            keys: env_number("REDLIMIT_BENCH_KEYS", 100_000).max(1),
            redis_cell,
            redis_cell_source,
            pinning,
            unpinned_reason,
            write_docs: env::var("REDLIMIT_BENCH_DOCS").map_or(true, |value| value != "0"),
            rows: env::var("REDLIMIT_BENCH_ROWS")
                .ok()
                .filter(|rows| !rows.trim().is_empty()),
            propagating: env::var("REDLIMIT_BENCH_PROPAGATE").is_ok_and(|value| value == "1"),
        }
    }
}

/// The server on one CPU, the load generator on another.
pub struct Pinning {
    server_cpu: String,
    generator_cpu: String,
}

impl Pinning {
    /// The first two CPUs this process may run on (`taskset -c -p <own pid>`).
    fn detect() -> Result<Self, String> {
        let output = Command::new("taskset")
            .args(["-c", "-p", &std::process::id().to_string()])
            .output()
            .map_err(|e| format!("no taskset: {e}; install util-linux"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let list = text
            .rsplit(':')
            .next()
            .filter(|_| output.status.success())
            .ok_or_else(|| format!("taskset -c -p answered {text:?}"))?;
        let cpus = cpu_list(list.trim());
        match cpus.as_slice() {
            [server, generator, ..] => Ok(Self {
                server_cpu: server.to_string(),
                generator_cpu: generator.to_string(),
            }),
            _ => Err(format!("only CPU {} available", list.trim())),
        }
    }

    /// Pins every thread of a running server to the server's CPU.
    fn pin_server(&self, pid: u32) {
        let output = Command::new("taskset")
            .args(["-a", "-p", "-c", &self.server_cpu, &pid.to_string()])
            .output()
            .unwrap_or_else(|e| panic!("cannot run taskset: {e}"));
        assert!(
            output.status.success(),
            "taskset -a -p -c {} {pid} failed: {}",
            self.server_cpu,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The CPUs of a list such as `0,2-3`, in order.
fn cpu_list(list: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        let mut bounds = part.trim().splitn(2, '-').map(|n| n.trim().parse::<u32>());
        match (bounds.next(), bounds.next()) {
            (Some(Ok(first)), None) => cpus.push(first),
            (Some(Ok(first)), Some(Ok(last))) => cpus.extend(first..=last),
            _ => {}
        }
    }
    cpus
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

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn utc_now() -> String {
    redlimit_test_support::shell_line("date", &["-u", "+%Y-%m-%d %H:%M"])
}

fn start(binary: &ServerBinary, module: &Path, settings: &Settings) -> Server {
    builder(binary, module, settings).start()
}

/// A server with our module, and redis-cell's when it was found.
fn builder(binary: &ServerBinary, module: &Path, settings: &Settings) -> ServerBuilder {
    let mut builder = ServerBuilder::new(binary).module(module);
    if settings.propagating {
        // Never reached in a run; makes the module propagate (see module/src/propagation.rs).
        builder = builder.args(["--save", "86400 1"]);
    }
    match &settings.redis_cell {
        Some(cell) => builder.module(cell),
        None => builder,
    }
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
    let short = redlimit_test_support::shell_line("git", &["rev-parse", "--short", "HEAD"]);
    let dirty = !redlimit_test_support::shell_line(
        "git",
        &["status", "--porcelain", "--", "core", "module"],
    )
    .is_empty();
    if dirty {
        format!("{short}, core/ or module/ modified")
    } else {
        short
    }
}
