//! Throughput: `redis-benchmark` against every row of [`workloads`] in one server, the
//! rows interleaved for several rounds; each rate divided by its baseline's rate (an
//! INCR row) of the same round, and each row's server-side µs per call (`INFO
//! commandstats`) divided by the floor module's of the same round.

use std::env;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use redlimit_test_support::{ServerBinary, median};

use crate::scripts::Scripts;
use crate::{Settings, floor, info_field, server_version};

/// Concurrent connections of `redis-benchmark`.
pub const CLIENTS: u32 = 50;
/// Size of the random keyspace (`-r`).
pub const KEYSPACE: u32 = 100_000;
/// Pipeline depths measured.
pub const PIPELINES: [u32; 2] = [1, 16];

/// One command line driven by `redis-benchmark`.
pub struct Workload {
    /// How the tables name it.
    pub label: String,
    /// Its `INFO commandstats` name (`cmdstat_<stat>`).
    pub stat: &'static str,
    /// Its `INFO redlimit` counters (`redlimit_<name>_allowed`), for `RL.*` commands.
    pub counter: Option<&'static str>,
    /// The command and its arguments, `__rand_int__` in the key.
    argv: Vec<String>,
    /// The workload whose rate of the same round it is divided by (an INCR row).
    pub baseline: usize,
    /// In the chart (pipeline 16).
    pub charted: bool,
    /// Divides the requests of its figures (10 for the script engine's rows, which
    /// run ~35 times the module's instructions; the least duration still holds).
    share: u64,
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
            share: 1,
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
    // FLOOR_ROW: the reference every row's exec µs is divided by.
    add(
        FLOOR_LABEL,
        floor::STAT,
        None,
        &[floor::COMMAND, "fl:__rand_int__", "100", "10", "60000"],
        base,
        true,
    );
    add(
        "floor, keys expire after 100 ms (RL.TOKENBUCKET's churn)",
        floor::STAT,
        None,
        &[floor::COMMAND, "fe:__rand_int__", "100", "10", "100"],
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
            REDIS_CELL_LABEL,
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
    rows.extend(script_engine_rows(scripts, base));
    rows
}

/// The client's script engine (`client/lua`, what `ServerEngine::Scripts` sends where
/// the module cannot be loaded): the same policies as the module's rows, through
/// `EVALSHA` on its own key namespace, with a tenth of the requests.
fn script_engine_rows(scripts: &Scripts, baseline: usize) -> Vec<Workload> {
    let rows: [(&str, &str, &[&str]); 5] = [
        (
            "token bucket 100 10 1000",
            "stb",
            &["tokenbucket", "100", "10", "1000"],
        ),
        ("throttle 15 30 60", "sth", &["throttle", "15", "30", "60"]),
        ("fixed 100 60000", "sfx", &["fixed", "100", "60000"]),
        (
            "sliding 100 60000 APPROX",
            "sap",
            &["sliding-approx", "100", "60000"],
        ),
        (
            "sliding 100 60000 (exact)",
            "ssl",
            &["sliding", "100", "60000"],
        ),
    ];
    rows.into_iter()
        .map(|(label, prefix, policy)| {
            let mut argv = vec![
                "EVALSHA".to_owned(),
                scripts.engine.clone(),
                "1".to_owned(),
                format!("{{{prefix}:__rand_int__}}|rls"),
                "decide".to_owned(),
                "0".to_owned(),
            ];
            argv.extend(policy.iter().map(|&arg| arg.to_owned()));
            argv.extend(["1", "0", "0"].map(str::to_owned)); // cost, peek, max_wait_ms
            Workload {
                label: format!("scripts: {label}"),
                stat: "evalsha",
                counter: None,
                argv,
                baseline,
                charted: false,
                share: 10,
            }
        })
        .collect()
}

/// Index of the INCR row on random keys (the baseline of every other row).
const RANDOM_INCR: usize = 4;
/// Index of the floor module's row (keys that stay): the reference of exec µs.
pub const FLOOR_ROW: usize = RANDOM_INCR + 1;
/// How the tables name the floor module's row.
pub const FLOOR_LABEL: &str = "floor (module-API minimum): FLOOR.CALL key 100 10 60000";
/// The label of redis-cell's row, when it is loaded: the reference of the
/// "÷ redis-cell" column.
pub const REDIS_CELL_LABEL: &str = "redis-cell CL.THROTTLE 15 30 60";

/// One `redis-benchmark` run.
pub struct Sample {
    round: usize,
    pipeline: u32,
    workload: usize,
    /// Requests sent, and how long `redis-benchmark` took (with its connection set-up).
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub usec_per_call: f64,
    /// Share of the calls allowed, for `RL.*` commands.
    pub allowed: Option<f64>,
    /// Keys the server expired (lazily or actively) per call, until it went quiet.
    pub expired_per_call: f64,
}

/// Everything measured on one server.
pub struct ThroughputReport {
    /// `redis-8.2 (8.2.3)`.
    pub server: String,
    pub workloads: Vec<Workload>,
    samples: Vec<Sample>,
}

/// How many requests one figure sends: at least `settings.requests` at pipeline 16 (a
/// tenth of it at pipeline 1), divided by the workload's share, and at least `settings.seconds` at the rate the warm-up
/// of that row at that depth reached.
fn requests_for(settings: &Settings, workload: &Workload, pipeline: u32, warm_up_rate: f64) -> u64 {
    let base = if pipeline >= 16 {
        settings.requests
    } else {
        settings.requests / 10
    };
    let base = (base / workload.share).max(1);
    let for_duration = (warm_up_rate * settings.seconds).ceil();
    if for_duration.is_finite() && for_duration > base as f64 {
        for_duration as u64
    } else {
        base
    }
}

/// Starts one server with redlimit, the floor module and redis-cell (when found), pins it
/// to its CPU, and measures every row of [`workloads`], interleaved, for
/// `settings.rounds` rounds.
pub fn measure_throughput(
    binary: &ServerBinary,
    module: &Path,
    floor_module: &Path,
    settings: &Settings,
) -> ThroughputReport {
    let server = crate::builder(binary, module, settings)
        .module(floor_module)
        .start();
    if let Some(pinning) = &settings.pinning {
        pinning.pin_server(server.pid());
    }
    let generator = Generator {
        port: server.port(),
        cpu: settings.pinning.as_ref().map(|p| p.generator_cpu.clone()),
    };
    let mut con = server.connection();
    let scripts = Scripts::load(&mut con, binary.name());
    let workloads = workloads(&scripts, settings.redis_cell.is_some());
    let cell = workloads.iter().position(|w| w.label == REDIS_CELL_LABEL);
    // `REDLIMIT_BENCH_ROWS`: only the rows whose label contains one of its comma-separated
    // parts, and always the references (both INCR rows, the floor, redis-cell).
    let selected: Vec<bool> = (0..workloads.len())
        .map(|index| {
            [HOT_INCR, RANDOM_INCR, FLOOR_ROW].contains(&index)
                || Some(index) == cell
                || settings.rows.as_deref().is_none_or(|rows| {
                    rows.split(',')
                        .any(|part| workloads[index].label.contains(part.trim()))
                })
        })
        .collect();
    for workload in &workloads {
        check_command_works(&mut con, workload, binary.name());
    }
    // Warm-up, not recorded: fills the keyspaces and the allocator's caches, and gives
    // each row's rate at each depth (to size the runs that must last `seconds`).
    let mut warm_up = vec![[0.0_f64; PIPELINES.len()]; workloads.len()];
    for (index, workload) in workloads.iter().enumerate() {
        if !selected[index] {
            continue;
        }
        for (depth, pipeline) in PIPELINES.into_iter().enumerate().rev() {
            let requests = (requests_for(settings, workload, pipeline, 0.0) / 4).max(1);
            warm_up[index][depth] = generator.run(pipeline, requests, &workload.argv);
            wait_for_expiry_to_settle(&mut con);
        }
    }

    let mut samples = Vec::new();
    for round in 0..settings.rounds {
        for (depth, pipeline) in PIPELINES.into_iter().enumerate() {
            for (index, workload) in workloads.iter().enumerate() {
                if !selected[index] {
                    continue;
                }
                let requests = requests_for(settings, workload, pipeline, warm_up[index][depth]);
                let counters_before = workload.counter.map(|name| decisions(&mut con, name));
                let () = redis::cmd("CONFIG")
                    .arg("RESETSTAT")
                    .query(&mut con)
                    .unwrap_or_else(|e| panic!("CONFIG RESETSTAT failed: {e}"));
                let started = Instant::now();
                let requests_per_second = generator.run(pipeline, requests, &workload.argv);
                let seconds = started.elapsed().as_secs_f64();
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
                    stats.calls >= requests,
                    "{}: {} ran {} times, expected {requests}",
                    binary.name(),
                    workload.label,
                    stats.calls,
                );
                let usec_per_call = stats.usec as f64 / stats.calls as f64;
                let allowed = workload.counter.zip(counters_before).map(|(name, before)| {
                    let after = decisions(&mut con, name);
                    let allowed = after.0.saturating_sub(before.0) as f64;
                    let denied = after.1.saturating_sub(before.1) as f64;
                    allowed / (allowed + denied).max(1.0)
                });
                let expired_per_call = expired as f64 / requests as f64;
                eprintln!(
                    "{} round {} -P {pipeline:>2} {:<56} {requests:>8} req in {seconds:>5.2} s {requests_per_second:>9.0} req/s {usec_per_call:>5.2} µs/call{}, {expired_per_call:.2} expired/call",
                    binary.name(),
                    round + 1,
                    workload.label,
                    allowed.map_or(String::new(), |a| format!(", {:.0}% allowed", a * 100.0)),
                );
                samples.push(Sample {
                    round,
                    pipeline,
                    workload: index,
                    requests,
                    seconds,
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

/// `redis-benchmark` against one server, on its own CPU when pinned.
struct Generator {
    port: u16,
    /// `taskset -c <cpu>` for every run.
    cpu: Option<String>,
}

impl Generator {
    /// Runs `redis-benchmark` once and returns its requests per second.
    fn run(&self, pipeline: u32, requests: u64, argv: &[String]) -> f64 {
        let program = env::var_os("REDIS_BENCHMARK").unwrap_or_else(|| "redis-benchmark".into());
        let mut command = match &self.cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", cpu]).arg(&program);
                taskset
            }
            None => Command::new(&program),
        };
        let output = command
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
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
    // Module commands keep the case they were registered with (`cmdstat_FLOOR.CALL`).
    let prefix = format!("cmdstat_{name}:");
    let mut stats = CommandStats::default();
    let Some(line) = info.lines().find_map(|line| {
        let head = line.get(..prefix.len())?;
        head.eq_ignore_ascii_case(&prefix)
            .then(|| &line[prefix.len()..])
    }) else {
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
    /// The samples of one row at one pipeline depth, in round order.
    pub fn samples_of(&self, workload: usize, pipeline: u32) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.pipeline == pipeline && s.workload == workload)
            .collect()
    }

    /// Each round's rate of `workload` divided by its baseline's rate in that round.
    pub fn ratios(&self, workload: usize, pipeline: u32) -> Vec<f64> {
        self.ratios_to(workload, self.workloads[workload].baseline, pipeline)
    }

    /// Each round's rate of `workload` divided by the rate of `reference` in that round.
    pub fn ratios_to(&self, workload: usize, reference: usize, pipeline: u32) -> Vec<f64> {
        self.per_round(workload, reference, pipeline, |s| s.requests_per_second)
    }

    /// Each round's server-side µs per call of `workload` divided by that of the floor
    /// module's row in that round.
    pub fn exec_to_floor(&self, workload: usize, pipeline: u32) -> Vec<f64> {
        self.per_round(workload, FLOOR_ROW, pipeline, |s| s.usec_per_call)
    }

    /// Median over rounds of the rate of `workload` ÷ that of `reference`.
    pub fn median_ratio_to(&self, workload: usize, reference: usize, pipeline: u32) -> f64 {
        median(&self.ratios_to(workload, reference, pipeline))
    }

    /// The index of the row labelled `label`.
    pub fn row(&self, label: &str) -> Option<usize> {
        self.workloads.iter().position(|w| w.label == label)
    }

    /// `figure(workload) / figure(reference)`, round by round.
    fn per_round(
        &self,
        workload: usize,
        reference: usize,
        pipeline: u32,
        figure: impl Fn(&Sample) -> f64,
    ) -> Vec<f64> {
        self.samples_of(workload, pipeline)
            .iter()
            .filter_map(|s| {
                let base = self.samples.iter().find(|r| {
                    r.round == s.round && r.pipeline == pipeline && r.workload == reference
                })?;
                Some(figure(s) / figure(base))
            })
            .collect()
    }
}
