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
//!    for every row of [`workloads`]: INCR on random keys (the baseline), every `RL.*`
//!    limiting command, our Lua equivalents of the common scripts (token bucket on a
//!    hash, GCRA, zset sliding log, INCR+PEXPIRE fixed window), an empty `EVALSHA`,
//!    `CL.THROTTLE` when `REDIS_CELL_SO` names a built redis-cell, two reference rows
//!    that explain the token bucket's figure, and rows on one hot key (divided by INCR
//!    on one hot key). The runs are interleaved for several rounds; each rate is divided
//!    by its baseline's rate of the same round and pipeline depth, and the tables report
//!    medians over the rounds. Before each run `CONFIG RESETSTAT`, after it `INFO
//!    commandstats`: the server-side µs per call; the share of `RL.*` calls allowed
//!    (`INFO redlimit`); and `expired_keys` per call. After each run the bench waits
//!    until the server stops expiring keys.
//! 2. **Bytes per key.** On a second, fresh server: `FLUSHALL`, `used_memory`, then
//!    100,000 keys of one kind written through pipelines, `used_memory` again; the
//!    difference divided by the number of keys, and `MEMORY USAGE` of one key, for
//!    every limiter kind, the Lua scripts' keys, and references (`SET key <19 digits>
//!    PX 60000`, what redis-cell stores per key, and `INCR key`).
//! 3. **Propagated bytes.** On a primary with `appendonly yes` and one replica: AOF and
//!    replication bytes per allowed, denied, `PEEK` and `COST 0` call of each kind.
//!
//! It prints Markdown tables, writes them between the `<!-- server-bench:start -->` and
//! `<!-- server-bench:end -->` markers of `docs/benchmarks.md`, and draws
//! `docs/benchmarks-throughput.svg` (`REDLIMIT_BENCH_DOCS=0`: print only).
//!
//! Environment: `REDLIMIT_BENCH_ROUNDS` (default 3), `REDLIMIT_BENCH_REQUESTS` (requests
//! per `redis-benchmark` run, default 50000), `REDLIMIT_BENCH_KEYS` (keys per kind for
//! bytes per key, default 100000), `REDLIMIT_SERVERS`, `REDLIMIT_MODULE`,
//! `REDIS_CELL_SO`, `REDLIMIT_BENCH_DOCS`.
//!
//! Run without `--bench` (as `cargo test --benches` does) it only says how to run it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use redlimit_test_support::{
    Server, ServerBinary, ServerBuilder, available_servers, median, min_max, set_clock_offset,
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
    let module = redlimit_test_support::release_module_path();
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
    line(format!(
        "- started (UTC): {}",
        redlimit_test_support::shell_line("date", &["-u", "+%Y-%m-%d %H:%M"])
    ));
    line(format!("- module: {}", module.display()));
    line(format!("- work tree: commit {}", commit()));
    line(format!(
        "- machine: {} CPUs, load average at start: {}",
        thread::available_parallelism().map_or(0, usize::from),
        redlimit_test_support::load_average()
    ));
    line(format!(
        "- redis-benchmark -c {CLIENTS} -r {KEYSPACE} -n {} -P 1|16; {} rounds, interleaved",
        settings.requests, settings.rounds
    ));
    if let Some(cell) = &settings.redis_cell {
        line(format!("- redis-cell: {}", cell.display()));
    }

    let mut throughput = Vec::new();
    let mut memory = Vec::new();
    let mut aof = Vec::new();
    for binary in &servers {
        eprintln!("== {}", binary.name());
        throughput.push(measure_throughput(binary, &module, &settings));
        memory.push(measure_memory(binary, &module, &settings));
        aof.push(measure_propagation(binary, &module, &settings));
    }

    let mut line = |text: String| {
        println!("{text}");
        report.push_str(&text);
        report.push('\n');
    };
    line(format!(
        "- ended (UTC): {}, load average at end: {}\n",
        redlimit_test_support::shell_line("date", &["-u", "+%Y-%m-%d %H:%M"]),
        redlimit_test_support::load_average()
    ));
    line(
        "### Throughput (ratio = median over rounds of req/s ÷ INCR req/s in the same round)\n"
            .to_owned(),
    );
    line(
        "Rows on one hot key divide by INCR on one hot key; all others by INCR on random keys.\n"
            .to_owned(),
    );
    line(
        "| server | command | pipeline | req/s (median) | ratio to INCR (median) | ratio min–max | usec_per_call (median) | allowed | keys expired per call |"
            .to_owned(),
    );
    line("|---|---|---:|---:|---:|---:|---:|---:|---:|".to_owned());
    for report in &throughput {
        for row in report.rows() {
            line(row);
        }
    }
    line(format!(
        "\n### Bytes per key ({} keys of each kind; used_memory delta ÷ keys)\n",
        settings.keys
    ));
    line("| server | kind | written with | bytes per key | MEMORY USAGE of one key |".to_owned());
    line("|---|---|---|---:|---:|".to_owned());
    for rows in &memory {
        for row in rows {
            line(format!(
                "| {} | {} | `{}` | {:.1} | {} |",
                row.server, row.kind, row.command, row.bytes_per_key, row.memory_usage
            ));
        }
    }
    line(format!(
        "\n### Propagated bytes per call ({PROPAGATION_CALLS} calls of each kind; AOF size and replication offset deltas ÷ calls)\n"
    ));
    line(
        "| server | command | outcome | AOF bytes per call | replication bytes per call |"
            .to_owned(),
    );
    line("|---|---|---|---:|---:|".to_owned());
    for rows in &aof {
        for row in rows {
            line(format!(
                "| {} | `{}` | {} | {:.1} | {:.1} |",
                row.server, row.command, row.outcome, row.aof_bytes, row.repl_bytes
            ));
        }
    }
    let svg = chart(&throughput);
    if settings.write_docs {
        write_docs(&report, &svg);
    }
}

/// Where the bench writes its results: between these markers of `docs/benchmarks.md`,
/// and the chart next to it.
const DOCS_START: &str = "<!-- server-bench:start -->";
const DOCS_END: &str = "<!-- server-bench:end -->";
const CHART_FILE: &str = "docs/benchmarks-throughput.svg";

/// Replaces the results section of `docs/benchmarks.md` and writes the chart.
fn write_docs(report: &str, svg: &str) {
    let chart_path = repo_root().join(CHART_FILE);
    std::fs::write(&chart_path, svg)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", chart_path.display()));
    eprintln!("wrote {}", chart_path.display());
    let docs_path = repo_root().join("docs/benchmarks.md");
    let Ok(docs) = std::fs::read_to_string(&docs_path) else {
        eprintln!("no {}: results printed only", docs_path.display());
        return;
    };
    let (Some(start), Some(end)) = (docs.find(DOCS_START), docs.find(DOCS_END)) else {
        eprintln!(
            "{} has no {DOCS_START} … {DOCS_END} section: results printed only",
            docs_path.display()
        );
        return;
    };
    if end < start {
        eprintln!(
            "{}: markers out of order: results printed only",
            docs_path.display()
        );
        return;
    }
    let updated = format!(
        "{}{DOCS_START}\n\n{report}\n{}",
        &docs[..start],
        &docs[end..]
    );
    std::fs::write(&docs_path, updated)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", docs_path.display()));
    eprintln!("wrote the results into {}", docs_path.display());
}

/// Knobs read from the environment.
struct Settings {
    rounds: usize,
    requests: u64,
    keys: usize,
    /// A built redis-cell module (`REDIS_CELL_SO`), loaded next to ours.
    redis_cell: Option<PathBuf>,
    /// Write the results into `docs/` (`REDLIMIT_BENCH_DOCS=0`: print only).
    write_docs: bool,
}

impl Settings {
    fn from_env() -> Self {
        let redis_cell = env::var_os("REDIS_CELL_SO").map(PathBuf::from);
        if let Some(path) = &redis_cell {
            assert!(
                path.is_file(),
                "REDIS_CELL_SO={} does not exist",
                path.display()
            );
        }
        Self {
            rounds: env_number("REDLIMIT_BENCH_ROUNDS", 3).max(1),
            requests: env_number("REDLIMIT_BENCH_REQUESTS", 50_000).max(1),
            keys: env_number("REDLIMIT_BENCH_KEYS", 100_000).max(1),
            redis_cell,
            write_docs: env::var("REDLIMIT_BENCH_DOCS").map_or(true, |value| value != "0"),
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

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start(binary: &ServerBinary, module: &Path, settings: &Settings) -> Server {
    builder(binary, module, settings).start()
}

/// A server with our module, and redis-cell's when `REDIS_CELL_SO` is set.
fn builder(binary: &ServerBinary, module: &Path, settings: &Settings) -> ServerBuilder {
    let builder = ServerBuilder::new(binary).module(module);
    match &settings.redis_cell {
        Some(cell) => builder.module(cell),
        None => builder,
    }
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
    /// The workload whose rate of the same round it is divided by (an INCR row).
    baseline: usize,
    /// In the chart (pipeline 16).
    charted: bool,
}

/// Our Lua equivalent of the common token bucket script: tokens and a timestamp in a
/// hash, refilled from the server's `TIME`, an expiry when the bucket would be full.
/// `KEYS[1]`, `ARGV`: capacity, refill_tokens, refill_ms.
const LUA_TOKEN_BUCKET: &str = "\
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1)
return {allowed, capacity, math.floor(tokens)}
";

/// Our Lua equivalent of the common GCRA script (as in go-redis/redis_rate): the
/// theoretical arrival time in a string with an expiry. `KEYS[1]`, `ARGV`: burst,
/// count per period, period_ms.
const LUA_GCRA: &str = "\
local burst = tonumber(ARGV[1])
local emission = tonumber(ARGV[3]) / tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + emission
if new_tat - emission * (burst + 1) > now then
  return {0, burst + 1, 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
return {1, burst + 1, math.floor((now - (new_tat - emission * (burst + 1))) / emission)}
";

/// Our Lua equivalent of the common sorted-set sliding log. `KEYS[1]`, `ARGV`: limit,
/// window_ms, a member suffix (unique per caller).
const LUA_SLIDING_LOG: &str = "\
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit, limit - count - 1}
end
return {0, limit, 0}
";

/// Our Lua equivalent of the common fixed window: INCR, and PEXPIRE on the first call.
/// `KEYS[1]`, `ARGV`: limit, window_ms.
const LUA_FIXED_WINDOW: &str = "\
local limit = tonumber(ARGV[1])
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if count > limit then return {0, limit, 0} end
return {1, limit, limit - count}
";

/// The SHA1s of the scripts, as `SCRIPT LOAD` answered them.
struct Scripts {
    empty: String,
    token_bucket: String,
    gcra: String,
    sliding_log: String,
    fixed_window: String,
}

impl Scripts {
    fn load(con: &mut redis::Connection, server: &str) -> Self {
        let mut load = |source: &str| -> String {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(source)
                .query(con)
                .unwrap_or_else(|e| panic!("{server}: SCRIPT LOAD failed: {e}"))
        };
        Self {
            empty: load(""),
            token_bucket: load(LUA_TOKEN_BUCKET),
            gcra: load(LUA_GCRA),
            sliding_log: load(LUA_SLIDING_LOG),
            fixed_window: load(LUA_FIXED_WINDOW),
        }
    }
}

/// Index of the INCR row on one hot key (the baseline of the hot-key rows).
const HOT_INCR: usize = 0;

/// The measured commands; rows divide by the INCR row of their kind in the same round.
///
/// Two rows explain the token bucket's figure: its keys go idle, and so expire, 100 ms
/// after a call, so at these rates most calls create a key that the server deletes again
/// shortly after. `SET ... PX 100` pays the same churn with a plain string; the
/// long-lived token bucket pays none.
fn workloads(scripts: &Scripts, redis_cell: bool) -> Vec<Workload> {
    let mut rows: Vec<Workload> = Vec::new();
    let mut add = |label: &str, stat, counter, argv: &[&str], baseline, charted| {
        rows.push(Workload {
            label: label.to_owned(),
            stat,
            counter,
            argv: argv.iter().map(|&arg| arg.to_owned()).collect(),
            baseline,
            charted,
        });
    };
    // One hot key first, so that HOT_INCR is 0; random keys from RANDOM_INCR on.
    add(
        "INCR, one hot key",
        "incr",
        None,
        &["INCR", "hot:incr"],
        HOT_INCR,
        false,
    );
    add(
        "RL.TOKENBUCKET, one hot key, allowed (10^9 tokens)",
        "rl.tokenbucket",
        Some("tokenbucket"),
        &[
            "RL.TOKENBUCKET",
            "hot:tba",
            "1000000000",
            "1000000000",
            "1000",
        ],
        HOT_INCR,
        false,
    );
    add(
        "RL.TOKENBUCKET, one hot key, denied (100 10 1000)",
        "rl.tokenbucket",
        Some("tokenbucket"),
        &["RL.TOKENBUCKET", "hot:tbd", "100", "10", "1000"],
        HOT_INCR,
        false,
    );
    add(
        "Lua token bucket (hash), one hot key, denied",
        "evalsha",
        None,
        &[
            "EVALSHA",
            &scripts.token_bucket,
            "1",
            "hot:lua",
            "100",
            "10",
            "1000",
        ],
        HOT_INCR,
        false,
    );
    let base = RANDOM_INCR;
    add(
        "INCR",
        "incr",
        None,
        &["INCR", "k:__rand_int__"],
        base,
        false,
    );
    add(
        "RL.TOKENBUCKET 100 10 1000",
        "rl.tokenbucket",
        Some("tokenbucket"),
        &["RL.TOKENBUCKET", "tb:__rand_int__", "100", "10", "1000"],
        base,
        true,
    );
    add(
        "RL.THROTTLE 15 30 60",
        "rl.throttle",
        Some("throttle"),
        &["RL.THROTTLE", "th:__rand_int__", "15", "30", "60"],
        base,
        true,
    );
    if redis_cell {
        add(
            "redis-cell CL.THROTTLE 15 30 60",
            "cl.throttle",
            None,
            &["CL.THROTTLE", "cl:__rand_int__", "15", "30", "60"],
            base,
            true,
        );
    }
    add(
        "RL.SLIDING 100 60000 (exact)",
        "rl.sliding",
        Some("sliding"),
        &["RL.SLIDING", "sl:__rand_int__", "100", "60000"],
        base,
        true,
    );
    add(
        "RL.SLIDING 100 60000 APPROX",
        "rl.sliding",
        Some("sliding"),
        &["RL.SLIDING", "sa:__rand_int__", "100", "60000", "APPROX"],
        base,
        true,
    );
    add(
        "RL.FIXED 100 60000",
        "rl.fixed",
        Some("fixed"),
        &["RL.FIXED", "fx:__rand_int__", "100", "60000"],
        base,
        true,
    );
    add(
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
        base,
        true,
    );
    add(
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
        base,
        true,
    );
    add(
        "Lua token bucket (hash) 100 10 1000",
        "evalsha",
        None,
        &[
            "EVALSHA",
            &scripts.token_bucket,
            "1",
            "ltb:__rand_int__",
            "100",
            "10",
            "1000",
        ],
        base,
        true,
    );
    add(
        "Lua GCRA 15 30 60000",
        "evalsha",
        None,
        &[
            "EVALSHA",
            &scripts.gcra,
            "1",
            "lgc:__rand_int__",
            "15",
            "30",
            "60000",
        ],
        base,
        true,
    );
    add(
        "Lua sliding log (zset) 100 60000",
        "evalsha",
        None,
        &[
            "EVALSHA",
            &scripts.sliding_log,
            "1",
            "lsl:__rand_int__",
            "100",
            "60000",
            "__rand_int__",
        ],
        base,
        true,
    );
    add(
        "Lua fixed window (INCR+PEXPIRE) 100 60000",
        "evalsha",
        None,
        &[
            "EVALSHA",
            &scripts.fixed_window,
            "1",
            "lfx:__rand_int__",
            "100",
            "60000",
        ],
        base,
        true,
    );
    add(
        "EVALSHA (empty script)",
        "evalsha",
        None,
        &["EVALSHA", &scripts.empty, "1", "ev:__rand_int__"],
        base,
        true,
    );
    add(
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
        base,
        true,
    );
    add(
        "ref: SET 1 PX 100 (same churn)",
        "set",
        None,
        &["SET", "s:__rand_int__", "1", "PX", "100"],
        base,
        false,
    );
    rows
}

/// Index of the INCR row on random keys (the baseline of every other row).
const RANDOM_INCR: usize = 4;

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
    let server = start(binary, module, settings);
    let mut con = server.connection();
    let scripts = Scripts::load(&mut con, binary.name());
    let workloads = workloads(&scripts, settings.redis_cell.is_some());
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
    /// The Markdown rows of this server.
    fn rows(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for pipeline in PIPELINES {
            for (index, workload) in self.workloads.iter().enumerate() {
                let samples = self.samples_of(index, pipeline);
                let ratios = self.ratios(index, pipeline);
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
                rows.push(format!(
                    "| {} | {} | {pipeline} | {:.0} | {:.2}× | {low:.2}–{high:.2} | {:.2} | {allowed} | {:.2} |",
                    self.server,
                    workload.label,
                    median(&rates),
                    median(&ratios),
                    median(&usecs),
                    median(&expired),
                ));
            }
        }
        rows
    }

    fn samples_of(&self, workload: usize, pipeline: u32) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.pipeline == pipeline && s.workload == workload)
            .collect()
    }

    /// Each round's rate of `workload` divided by its baseline's rate in that round.
    fn ratios(&self, workload: usize, pipeline: u32) -> Vec<f64> {
        let baseline = self.workloads[workload].baseline;
        self.samples_of(workload, pipeline)
            .iter()
            .filter_map(|s| Some(s.requests_per_second / self.rate(baseline, s.round, pipeline)?))
            .collect()
    }

    /// The rate of one workload in one round at one pipeline depth.
    fn rate(&self, workload: usize, round: usize, pipeline: u32) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.round == round && s.pipeline == pipeline && s.workload == workload)
            .map(|s| s.requests_per_second)
    }
}

// ---------------------------------------------------------------------------------------
// Bytes per key

/// Queues call number `call` on key `key`.
type WriteKey = Box<dyn Fn(&mut redis::Pipeline, &str, u64)>;

/// One kind of key and how to write it.
struct KeyKind {
    kind: &'static str,
    /// The command as the table shows it.
    command: &'static str,
    /// The command of call number `call` on key `key`.
    write: WriteKey,
    /// Calls per key, `SPACING_MS` apart on the module's test clock (1: one call).
    calls_per_key: u64,
}

/// Time between two calls on one key when a kind makes several (100 in a minute).
const SPACING_MS: u64 = 600;

/// A kind that sends `argv` (the key after the command name) once per key.
fn simple_kind(
    kind: &'static str,
    command: &'static str,
    argv: &'static [&'static str],
) -> KeyKind {
    KeyKind {
        kind,
        command,
        write: Box::new(move |pipe, key, _| {
            let cmd = pipe.cmd(argv[0]).arg(key);
            for arg in &argv[1..] {
                cmd.arg(*arg);
            }
            cmd.ignore();
        }),
        calls_per_key: 1,
    }
}

/// Policies slow enough that no key expires while the keyspace is being filled and
/// measured (the throughput policies' keys go idle, and vanish, within 2 s).
fn key_kinds(scripts: &Scripts, redis_cell: bool) -> Vec<KeyKind> {
    let mut kinds = vec![
        simple_kind(
            "token bucket",
            "RL.TOKENBUCKET key 100 1 60000",
            &["RL.TOKENBUCKET", "100", "1", "60000"],
        ),
        simple_kind(
            "throttle",
            "RL.THROTTLE key 15 1 60",
            &["RL.THROTTLE", "15", "1", "60"],
        ),
        KeyKind {
            kind: "sliding log, 100 calls in 60 s",
            command: "RL.SLIDING key 100 60000, 100 times 600 ms apart",
            write: Box::new(|pipe, key, _| {
                pipe.cmd("RL.SLIDING")
                    .arg(key)
                    .arg(100)
                    .arg(60_000)
                    .ignore();
            }),
            calls_per_key: 100,
        },
        simple_kind(
            "sliding APPROX",
            "RL.SLIDING key 100 60000 APPROX",
            &["RL.SLIDING", "100", "60000", "APPROX"],
        ),
        simple_kind(
            "fixed window",
            "RL.FIXED key 100 3600000",
            &["RL.FIXED", "100", "3600000"],
        ),
        simple_kind(
            "lease key, one 8-byte holder",
            "RL.ACQUIRE key 10 60000 holder-1",
            &["RL.ACQUIRE", "10", "60000", "holder-1"],
        ),
    ];
    if redis_cell {
        kinds.push(simple_kind(
            "redis-cell",
            "CL.THROTTLE key 15 1 60",
            &["CL.THROTTLE", "15", "1", "60"],
        ));
    }
    let token_bucket = scripts.token_bucket.clone();
    kinds.push(KeyKind {
        kind: "Lua token bucket (hash)",
        command: "EVALSHA <token bucket> 1 key 100 1 60000",
        write: Box::new(move |pipe, key, _| {
            pipe.cmd("EVALSHA")
                .arg(&token_bucket)
                .arg(1)
                .arg(key)
                .arg(100)
                .arg(1)
                .arg(60_000)
                .ignore();
        }),
        calls_per_key: 1,
    });
    let gcra = scripts.gcra.clone();
    kinds.push(KeyKind {
        kind: "Lua GCRA (string)",
        command: "EVALSHA <gcra> 1 key 15 1 60000",
        write: Box::new(move |pipe, key, _| {
            pipe.cmd("EVALSHA")
                .arg(&gcra)
                .arg(1)
                .arg(key)
                .arg(15)
                .arg(1)
                .arg(60_000)
                .ignore();
        }),
        calls_per_key: 1,
    });
    let sliding_log = scripts.sliding_log.clone();
    kinds.push(KeyKind {
        kind: "Lua sliding log (zset), 100 calls",
        command: "EVALSHA <sliding log> 1 key 100 60000 <call>, 100 times",
        write: Box::new(move |pipe, key, call| {
            pipe.cmd("EVALSHA")
                .arg(&sliding_log)
                .arg(1)
                .arg(key)
                .arg(100)
                .arg(60_000)
                .arg(call)
                .ignore();
        }),
        calls_per_key: 100,
    });
    kinds.push(simple_kind(
        "string, 19 digits, TTL (redis-cell's value)",
        "SET key 1763927000123456789 PX 60000",
        &["SET", NINETEEN_DIGITS, "PX", "60000"],
    ));
    kinds.push(simple_kind("INCR counter, no TTL", "INCR key", &["INCR"]));
    kinds
}

/// One row of the bytes-per-key table.
struct MemoryRow {
    server: String,
    kind: &'static str,
    command: &'static str,
    bytes_per_key: f64,
    memory_usage: i64,
}

fn measure_memory(binary: &ServerBinary, module: &Path, settings: &Settings) -> Vec<MemoryRow> {
    let keys = settings.keys;
    let server = start(binary, module, settings);
    let mut con = server.connection();
    let name = server_version(&mut con, binary);
    let scripts = Scripts::load(&mut con, binary.name());
    let mut rows = Vec::new();
    for kind in key_kinds(&scripts, settings.redis_cell.is_some()) {
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
                    (kind.write)(&mut pipe, key, call);
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
// Propagated bytes per call

/// Calls of each kind when measuring propagated bytes.
const PROPAGATION_CALLS: u64 = 1_000;

/// One row of the propagated-bytes table.
struct PropagationRow {
    server: String,
    command: String,
    outcome: &'static str,
    aof_bytes: f64,
    repl_bytes: f64,
}

/// One measured kind of call: the command for key number `i`, what it must answer.
struct PropagationCase {
    command: String,
    outcome: &'static str,
    /// One call per key made (not measured) first, e.g. to exhaust a limit.
    setup: Option<Vec<String>>,
    argv: Vec<String>,
    /// What the first element of each reply must be (`None`: not checked).
    expect_first: Option<i64>,
}

fn propagation_cases(scripts: &Scripts, redis_cell: bool) -> Vec<PropagationCase> {
    // `setup`: how many trailing arguments to drop for the setup call (None: no setup).
    let case = |command: &str, outcome, setup: Option<usize>, argv: &[&str], expect_first| {
        let argv: Vec<String> = argv.iter().map(|&arg| arg.to_owned()).collect();
        PropagationCase {
            command: command.to_owned(),
            outcome,
            setup: setup.map(|drop| argv[..argv.len() - drop].to_vec()),
            argv,
            expect_first,
        }
    };
    let mut cases = vec![
        case("INCR key", "–", None, &["INCR", "p:incr:KEY"], None),
        case(
            "RL.TOKENBUCKET key 1 1 3600000",
            "allowed",
            None,
            &["RL.TOKENBUCKET", "p:tb:KEY", "1", "1", "3600000"],
            Some(1),
        ),
        case(
            "RL.TOKENBUCKET key 1 1 3600000",
            "denied",
            Some(0),
            &["RL.TOKENBUCKET", "p:tb2:KEY", "1", "1", "3600000"],
            Some(0),
        ),
        case(
            "RL.TOKENBUCKET key 5 1 3600000 PEEK",
            "allowed (PEEK)",
            Some(1),
            &["RL.TOKENBUCKET", "p:tb3:KEY", "5", "1", "3600000", "PEEK"],
            Some(1),
        ),
        case(
            "RL.TOKENBUCKET key 5 1 3600000 COST 0",
            "allowed (COST 0)",
            Some(2),
            &[
                "RL.TOKENBUCKET",
                "p:tb4:KEY",
                "5",
                "1",
                "3600000",
                "COST",
                "0",
            ],
            Some(1),
        ),
        case(
            "RL.THROTTLE key 0 1 3600",
            "allowed",
            None,
            &["RL.THROTTLE", "p:th:KEY", "0", "1", "3600"],
            Some(0),
        ),
        case(
            "RL.THROTTLE key 0 1 3600",
            "denied",
            Some(0),
            &["RL.THROTTLE", "p:th2:KEY", "0", "1", "3600"],
            Some(1),
        ),
        case(
            "RL.SLIDING key 1 3600000",
            "allowed",
            None,
            &["RL.SLIDING", "p:sl:KEY", "1", "3600000"],
            Some(1),
        ),
        case(
            "RL.SLIDING key 1 3600000",
            "denied",
            Some(0),
            &["RL.SLIDING", "p:sl2:KEY", "1", "3600000"],
            Some(0),
        ),
        case(
            "RL.SLIDING key 1 3600000 PEEK",
            "denied (PEEK)",
            Some(1),
            &["RL.SLIDING", "p:sl3:KEY", "1", "3600000", "PEEK"],
            Some(0),
        ),
        case(
            "RL.FIXED key 1 3600000",
            "allowed",
            None,
            &["RL.FIXED", "p:fx:KEY", "1", "3600000"],
            Some(1),
        ),
        case(
            "RL.FIXED key 1 3600000",
            "denied",
            Some(0),
            &["RL.FIXED", "p:fx2:KEY", "1", "3600000"],
            Some(0),
        ),
        case(
            "RL.ALL 2 {k}m {k}h SLIDING 1 60000 FIXED 10 3600000",
            "allowed",
            None,
            &[
                "RL.ALL", "2", "{p:KEY}m", "{p:KEY}h", "SLIDING", "1", "60000", "FIXED", "10",
                "3600000",
            ],
            Some(1),
        ),
        case(
            "RL.ALL 2 {k}m {k}h SLIDING 1 60000 FIXED 10 3600000",
            "denied",
            Some(0),
            &[
                "RL.ALL",
                "2",
                "{p2:KEY}m",
                "{p2:KEY}h",
                "SLIDING",
                "1",
                "60000",
                "FIXED",
                "10",
                "3600000",
            ],
            Some(0),
        ),
        case(
            "RL.ACQUIRE key 1 60000 holder",
            "allowed",
            None,
            &["RL.ACQUIRE", "p:ls:KEY", "1", "60000", "holder"],
            Some(1),
        ),
        case(
            "Lua token bucket (hash), capacity 1",
            "allowed",
            None,
            &[
                "EVALSHA",
                &scripts.token_bucket,
                "1",
                "p:ltb:KEY",
                "1",
                "1",
                "3600000",
            ],
            Some(1),
        ),
        case(
            "Lua token bucket (hash), capacity 1",
            "denied",
            Some(0),
            &[
                "EVALSHA",
                &scripts.token_bucket,
                "1",
                "p:ltb2:KEY",
                "1",
                "1",
                "3600000",
            ],
            Some(0),
        ),
        case(
            "Lua GCRA, burst 0",
            "allowed",
            None,
            &[
                "EVALSHA",
                &scripts.gcra,
                "1",
                "p:lgc:KEY",
                "0",
                "1",
                "3600000",
            ],
            Some(1),
        ),
        case(
            "Lua GCRA, burst 0",
            "denied",
            Some(0),
            &[
                "EVALSHA",
                &scripts.gcra,
                "1",
                "p:lgc2:KEY",
                "0",
                "1",
                "3600000",
            ],
            Some(0),
        ),
        case(
            "Lua sliding log (zset), limit 1",
            "allowed",
            None,
            &[
                "EVALSHA",
                &scripts.sliding_log,
                "1",
                "p:lsl:KEY",
                "1",
                "3600000",
                "m",
            ],
            Some(1),
        ),
        case(
            "Lua sliding log (zset), limit 1",
            "denied",
            Some(0),
            &[
                "EVALSHA",
                &scripts.sliding_log,
                "1",
                "p:lsl2:KEY",
                "1",
                "3600000",
                "m",
            ],
            Some(0),
        ),
        case(
            "Lua fixed window, limit 1",
            "allowed",
            None,
            &[
                "EVALSHA",
                &scripts.fixed_window,
                "1",
                "p:lfx:KEY",
                "1",
                "3600000",
            ],
            Some(1),
        ),
        case(
            "Lua fixed window, limit 1",
            "denied",
            Some(0),
            &[
                "EVALSHA",
                &scripts.fixed_window,
                "1",
                "p:lfx2:KEY",
                "1",
                "3600000",
            ],
            Some(0),
        ),
    ];
    if redis_cell {
        cases.push(case(
            "CL.THROTTLE key 0 1 3600",
            "allowed",
            None,
            &["CL.THROTTLE", "p:cl:KEY", "0", "1", "3600"],
            Some(0),
        ));
        cases.push(case(
            "CL.THROTTLE key 0 1 3600",
            "denied",
            Some(0),
            &["CL.THROTTLE", "p:cl2:KEY", "0", "1", "3600"],
            Some(1),
        ));
    }
    cases
}

/// AOF and replication bytes per call: a primary with `appendonly yes` (no automatic
/// rewrite) and one replica; `aof_current_size` and `master_repl_offset` before and after
/// `PROPAGATION_CALLS` calls on distinct keys.
fn measure_propagation(
    binary: &ServerBinary,
    module: &Path,
    settings: &Settings,
) -> Vec<PropagationRow> {
    let primary = builder(binary, module, settings)
        .args(["--appendonly", "yes", "--appendfsync", "no"])
        .args(["--auto-aof-rewrite-percentage", "0"])
        .start();
    let replica = builder(binary, module, settings)
        .replica_of(&primary)
        .start();
    replica.wait_for_sync();
    let mut con = primary.connection();
    let name = server_version(&mut con, binary);
    let scripts = Scripts::load(&mut con, binary.name());
    // A first write, so that the one-time SELECT is not counted.
    let () = redis::cmd("SET")
        .arg("p:first")
        .arg(1)
        .query(&mut con)
        .unwrap_or_else(|e| panic!("SET failed: {e}"));
    let mut rows = Vec::new();
    for case in propagation_cases(&scripts, settings.redis_cell.is_some()) {
        let calls = |con: &mut redis::Connection| -> Vec<redis::Value> {
            let mut pipe = redis::pipe();
            for i in 0..PROPAGATION_CALLS {
                let cmd = pipe.cmd(&case.argv[0]);
                for arg in &case.argv[1..] {
                    cmd.arg(arg.replace("KEY", &i.to_string()));
                }
            }
            pipe.query(con)
                .unwrap_or_else(|e| panic!("{}: {} failed: {e}", binary.name(), case.command))
        };
        if let Some(setup) = &case.setup {
            let mut pipe = redis::pipe();
            for i in 0..PROPAGATION_CALLS {
                let cmd = pipe.cmd(&setup[0]);
                for arg in &setup[1..] {
                    cmd.arg(arg.replace("KEY", &i.to_string()));
                }
            }
            let _: Vec<redis::Value> = pipe.query(&mut con).unwrap_or_else(|e| {
                panic!("{}: setup of {} failed: {e}", binary.name(), case.command)
            });
        }
        thread::sleep(Duration::from_millis(100));
        let before = propagated(&mut con);
        let replies = calls(&mut con);
        thread::sleep(Duration::from_millis(100));
        let after = propagated(&mut con);
        if let Some(expected) = case.expect_first {
            let first = |reply: &redis::Value| match reply {
                redis::Value::Array(items) => match items.first() {
                    Some(redis::Value::Int(n)) => Some(*n),
                    _ => None,
                },
                _ => None,
            };
            assert!(
                replies.iter().all(|reply| first(reply) == Some(expected)),
                "{}: {} did not answer {} every time: {:?}",
                binary.name(),
                case.command,
                case.outcome,
                replies.first()
            );
        }
        let per_call = |b: u64, a: u64| a.saturating_sub(b) as f64 / PROPAGATION_CALLS as f64;
        let row = PropagationRow {
            server: name.clone(),
            command: case.command.clone(),
            outcome: case.outcome,
            aof_bytes: per_call(before.0, after.0),
            repl_bytes: per_call(before.1, after.1),
        };
        eprintln!(
            "{} {:<52} {:<16} {:>6.1} AOF bytes/call {:>6.1} replication bytes/call",
            binary.name(),
            row.command,
            row.outcome,
            row.aof_bytes,
            row.repl_bytes
        );
        rows.push(row);
    }
    drop(replica);
    rows
}

/// `(aof_current_size, master_repl_offset)` of a primary.
fn propagated(con: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query(con)
        .unwrap_or_else(|e| panic!("INFO failed: {e}"));
    let field = |name: &str| -> u64 {
        info_field(&info, name)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in INFO"))
    };
    (field("aof_current_size"), field("master_repl_offset"))
}

// ---------------------------------------------------------------------------------------
// The chart

/// A horizontal bar chart (SVG) of the pipeline-16 ratios to INCR: one group of bars per
/// charted command, one bar per server, with the issue's 0.75× target marked.
fn chart(reports: &[ThroughputReport]) -> String {
    const COLORS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1"];
    let Some(first) = reports.first() else {
        return String::new();
    };
    let commands: Vec<(usize, &str)> = first
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| w.charted)
        .map(|(index, w)| (index, w.label.as_str()))
        .collect();
    let (label_width, bar_height, group_gap, axis_width) = (330.0, 11.0, 10.0, 520.0);
    let group_height = bar_height * reports.len() as f64 + group_gap;
    let top = 60.0;
    let height = top + group_height * commands.len() as f64 + 50.0;
    let width = label_width + axis_width + 40.0;
    let max_ratio = 1.2_f64;
    let x = |ratio: f64| label_width + ratio.min(max_ratio) / max_ratio * axis_width;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">Throughput at pipeline 16, ratio to INCR on random keys (median over rounds)</text>\n"
    );
    for (index, report) in reports.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let lx = 10.0 + 170.0 * index as f64;
        svg.push_str(&format!(
            "<rect x=\"{lx:.0}\" y=\"30\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{:.0}\" y=\"39\">{}</text>\n",
            lx + 14.0,
            xml(&report.server)
        ));
    }
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let tx = x(tick);
        let style = if tick == 0.75 {
            "stroke=\"#d62728\" stroke-dasharray=\"4,3\""
        } else {
            "stroke=\"#ccc\""
        };
        svg.push_str(&format!(
            "<line x1=\"{tx:.1}\" y1=\"{:.0}\" x2=\"{tx:.1}\" y2=\"{:.0}\" {style}/><text x=\"{tx:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{tick:.2}×</text>\n",
            top - 6.0,
            height - 40.0,
            height - 26.0
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.0}\" fill=\"#d62728\">target 0.75×</text>\n",
        x(0.75) + 4.0,
        height - 12.0
    ));
    for (row, (workload, label)) in commands.iter().enumerate() {
        let gy = top + group_height * row as f64;
        svg.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            label_width - 6.0,
            gy + bar_height * reports.len() as f64 / 2.0 + 4.0,
            xml(label)
        ));
        for (index, report) in reports.iter().enumerate() {
            let ratio = median(&report.ratios(*workload, 16));
            if !ratio.is_finite() {
                continue;
            }
            let y = gy + bar_height * index as f64;
            svg.push_str(&format!(
                "<rect x=\"{label_width:.0}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{ratio:.2}</text>\n",
                x(ratio) - label_width,
                bar_height - 1.0,
                COLORS[index % COLORS.len()],
                x(ratio) + 3.0,
                y + bar_height - 2.5
            ));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// Text escaped for SVG.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
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
