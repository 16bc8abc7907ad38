//! Shared by the client tests: servers with the module, limiters speaking RESP2 or
//! RESP3, raw commands to compare with, and a stopwatch that prints what it measures.

use redis::{Connection, cmd};
use redlimit::{Backend, Builder, Decision, FailurePolicy, Policy, RateLimiter, ServerEngine};
use redlimit_test_support::{
    Server, ServerBinary, ServerBuilder, TestEngine, available_servers, module_path,
};
use std::time::{Duration, Instant};

/// The two protocols every operation is checked over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

pub const PROTOCOLS: [Protocol; 2] = [Protocol::Resp2, Protocol::Resp3];

impl Protocol {
    /// The URL of `server` speaking this protocol.
    pub fn url(self, server: &Server) -> String {
        match self {
            Protocol::Resp2 => server.url(),
            Protocol::Resp3 => format!("{}?protocol=resp3", server.url()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Resp2 => "resp2",
            Protocol::Resp3 => "resp3",
        }
    }
}

/// Every server binary found; says so when there is none.
pub fn binaries() -> Vec<ServerBinary> {
    let found = available_servers();
    if found.is_empty() {
        eprintln!("skipped: no server found; run scripts/install-deps.sh");
    }
    found
}

/// The engine the suites run with: `REDLIMIT_TEST_ENGINE=scripts` or `auto` runs them
/// on servers *without* the module, through the Lua scripts (raw `RL.*` comparison
/// commands are sent as the same script calls); unset, the module as always.
pub fn engine() -> ServerEngine {
    match redlimit_test_support::test_engine() {
        TestEngine::Module => ServerEngine::Module,
        TestEngine::Scripts => ServerEngine::Scripts,
        TestEngine::Auto => ServerEngine::Auto,
    }
}

/// True when the suites run on the scripts, without the module.
pub fn on_scripts() -> bool {
    engine() != ServerEngine::Module
}

/// `builder` with the module, unless the suites run on the scripts.
pub fn with_module(builder: ServerBuilder) -> ServerBuilder {
    if on_scripts() {
        builder
    } else {
        builder.module(module_path())
    }
}

/// `backend` deciding with the engine the suites run with.
pub fn with_engine(backend: Backend) -> Backend {
    backend.with_engine(engine())
}

/// A server of `binary` with the redlimit module (without it under the script engine).
pub fn start(binary: &ServerBinary) -> Server {
    if on_scripts() {
        return ServerBuilder::new(binary).start();
    }
    ServerBuilder::new(binary).module(module_path()).start()
}

/// One server with the module per binary, started lazily.
pub fn servers() -> impl Iterator<Item = Server> {
    binaries().into_iter().map(|binary| start(&binary))
}

/// Every (server, protocol) pair: `f` runs once per pair, both protocols of a server at
/// once. The server is shared by both protocols; keys must differ (use [`Case::key`]).
pub async fn each_case<F, Fut>(mut f: F)
where
    F: FnMut(Case) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for server in servers() {
        println!("== {}", server.binary().name());
        let server = std::sync::Arc::new(server);
        let [resp2, resp3] = PROTOCOLS.map(|protocol| Case {
            server: server.clone(),
            protocol,
        });
        // The two protocols run at once (their keys differ): it halves the sleeps.
        tokio::join!(f(resp2), f(resp3));
    }
}

/// As [`each_case`], one case after the other: for tests that count the server's calls
/// (`INFO redlimit` counts per server, not per key).
pub async fn each_case_in_turn<F, Fut>(mut f: F)
where
    F: FnMut(Case) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for server in servers() {
        println!("== {}", server.binary().name());
        let server = std::sync::Arc::new(server);
        for protocol in PROTOCOLS {
            f(Case {
                server: server.clone(),
                protocol,
            })
            .await;
        }
    }
}

/// One server and one protocol.
#[derive(Clone)]
pub struct Case {
    pub server: std::sync::Arc<Server>,
    pub protocol: Protocol,
}

impl Case {
    /// `redis-8.2 resp3`, for messages.
    pub fn name(&self) -> String {
        format!("{} {}", self.server.binary().name(), self.protocol.name())
    }

    /// `name` made unique to this protocol (both protocols share the server).
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.protocol.name())
    }

    pub fn url(&self) -> String {
        self.protocol.url(&self.server)
    }

    /// A limiter with room for a loaded machine (a 5 s timeout) that returns errors
    /// instead of answering for the server: these tests are about the server's answers.
    pub fn limiter(&self) -> RateLimiter {
        self.builder().build().unwrap()
    }

    /// The settings of [`limiter`](Self::limiter), to change some.
    pub fn builder(&self) -> Builder {
        RateLimiter::builder(Backend::redis(&self.url()).unwrap().with_engine(engine()))
            .timeout(Duration::from_secs(5))
            .on_failure(FailurePolicy::Error)
    }

    /// A plain RESP2 connection for raw commands.
    pub fn raw(&self) -> Connection {
        self.server.connection()
    }
}

/// `args` as one command (the first is its name).
pub fn command(args: &[&str]) -> redis::Cmd {
    let mut command = cmd(args[0]);
    command.arg(&args[1..]);
    command
}

/// `args` as one command, or as the script call deciding the same under the script
/// engine.
pub fn raw_command(args: &[&str]) -> redis::Cmd {
    let command = command(args);
    if on_scripts() {
        return redlimit::scripts::translate(&command, None).unwrap().eval();
    }
    command
}

/// A raw decision reply (RESP2: five integers).
pub fn raw_decision(con: &mut Connection, args: &[&str]) -> [i64; 5] {
    let reply: Vec<i64> = raw_command(args)
        .query(con)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    reply
        .try_into()
        .unwrap_or_else(|reply| panic!("{args:?}: {reply:?}"))
}

/// The raw command deciding `cost` under `policy` at `key`, as `docs/commands.md` writes
/// it (written out here, independently of the client's own encoding).
pub fn raw_args(key: &str, policy: &Policy, cost: u64, peek: bool) -> Vec<String> {
    let mut args: Vec<String> = match policy {
        Policy::TokenBucket(p) => vec![
            "RL.TOKENBUCKET".into(),
            key.into(),
            p.capacity().to_string(),
            p.refill_tokens().to_string(),
            p.refill_ms().to_string(),
        ],
        Policy::Fixed(p) => vec![
            "RL.FIXED".into(),
            key.into(),
            p.limit().to_string(),
            p.window_ms().to_string(),
        ],
        Policy::Sliding(p) => vec![
            "RL.SLIDING".into(),
            key.into(),
            p.limit().to_string(),
            p.window_ms().to_string(),
        ],
        Policy::SlidingApprox(p) => vec![
            "RL.SLIDING".into(),
            key.into(),
            p.limit().to_string(),
            p.window_ms().to_string(),
            "APPROX".into(),
        ],
        Policy::Throttle(p) => {
            assert!(!peek, "RL.THROTTLE has no PEEK");
            return vec![
                "RL.THROTTLE".into(),
                key.into(),
                p.max_burst().to_string(),
                p.count().to_string(),
                p.period_s().to_string(),
                cost.to_string(),
            ];
        }
    };
    args.extend(["COST".into(), cost.to_string()]);
    if peek {
        args.push("PEEK".into());
    }
    args
}

/// The raw decision of `cost` under `policy` at `key`.
pub fn raw_decide(
    con: &mut Connection,
    key: &str,
    policy: &Policy,
    cost: u64,
    peek: bool,
) -> [i64; 5] {
    let args = raw_args(key, policy, cost, peek);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    raw_decision(con, &args)
}

/// Milliseconds as the raw reply writes them (`-1`: never).
pub fn retry_ms(decision: &Decision) -> i64 {
    decision
        .retry_after
        .map_or(-1, |wait| i64::try_from(wait.as_millis()).unwrap())
}

/// A client decision against a raw reply made about the same moment on a twin key:
/// the same answer and counts; durations within `slack_ms` (the clock moved between the
/// two calls).
#[track_caller]
pub fn assert_like_raw(decision: &Decision, raw: [i64; 5], slack_ms: i64, context: &str) {
    let [allowed, limit, remaining, retry, reset] = raw;
    assert_eq!(
        (decision.allowed, decision.limit, decision.remaining),
        (
            allowed == 1,
            u64::try_from(limit).unwrap(),
            u64::try_from(remaining).unwrap()
        ),
        "{context}: {decision:?} vs raw {raw:?}"
    );
    let near = |ours: i64, theirs: i64| {
        if theirs <= 0 || ours <= 0 {
            ours == theirs
        } else {
            (ours - theirs).abs() <= slack_ms
        }
    };
    assert!(
        near(retry_ms(decision), retry),
        "{context}: retry {decision:?} vs raw {raw:?}"
    );
    let reset_ms = i64::try_from(decision.reset_after.as_millis()).unwrap();
    assert!(
        near(reset_ms, reset),
        "{context}: reset {decision:?} vs raw {raw:?}"
    );
}

/// `INFO redlimit` field `name` (e.g. `redlimit_fixed_calls`) as a number.
/// Under the script engine, every decision is a script call: the count of `EVALSHA`
/// and `EVAL` calls that did not fail (whatever `name` says).
pub fn info_count(con: &mut Connection, name: &str) -> u64 {
    if on_scripts() {
        // A script call refused with NOSCRIPT (then sent as EVAL) is one call.
        return ["cmdstat_evalsha", "cmdstat_eval"]
            .iter()
            .filter_map(|stat| redlimit_test_support::info_value(con, "commandstats", stat))
            .map(|line| {
                let field = |name: &str| {
                    line.split(',')
                        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
                        .map_or(0, |n| n.parse::<u64>().unwrap())
                };
                field("calls") - field("failed_calls")
            })
            .sum();
    }
    redlimit_test_support::info_value(con, "redlimit", name)
        .unwrap_or_else(|| panic!("INFO redlimit has no {name}"))
        .parse()
        .unwrap()
}

/// `EXISTS key` (under the script engine, the name the scripts keep `key` under).
pub fn exists(con: &mut Connection, key: &str) -> bool {
    let name = if on_scripts() {
        redlimit::scripts::script_key(key.as_bytes())
    } else {
        key.as_bytes().to_vec()
    };
    cmd("EXISTS").arg(name).query::<i64>(con).unwrap() == 1
}

/// Waits, if need be, until the current epoch-aligned window of `window_ms` has at
/// least 20 s left, so that a test counting in a fixed window never sees it end (the
/// window of an hour ends on the hour).
pub async fn clear_of_window_end(window_ms: u64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let now_ms = u64::try_from(now.as_millis()).unwrap();
    let left = window_ms - now_ms % window_ms;
    if left < 20_000 {
        println!("waiting {left} ms for the next {window_ms} ms window");
        tokio::time::sleep(Duration::from_millis(left + 10)).await;
    }
}

/// An hour: the fixed windows of these tests.
pub const HOUR_MS: u64 = 3_600_000;

/// Measures how long `future` takes; the caller prints the figure.
pub async fn timed<T>(future: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let value = future.await;
    (value, started.elapsed())
}

/// Durations as `12.3ms` figures, for the test output.
pub fn figures(durations: &[Duration]) -> String {
    durations
        .iter()
        .map(|d| format!("{:.1}ms", d.as_secs_f64() * 1_000.0))
        .collect::<Vec<_>>()
        .join(" ")
}
