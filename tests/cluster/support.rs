//! Shared by the cluster tests: a cluster per server binary, a cluster client, raw reads
//! on the node that owns a key, the servers' redirect counters, and a load generator
//! that counts every decision per key.

use redis::{Connection, Value};
use redlimit::{Backend, Decision, FailurePolicy, Policy, RateLimiter, Source};
use redlimit_test_support::{
    Cluster, ClusterBuilder, Flavor, ServerBinary, Status, available_servers, key_slot,
    module_path, status,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The binary of `flavor`, or `None` (said on stdout) when it is not selected by
/// `REDLIMIT_SERVERS` or skipped (`REDLIMIT_SKIP_MISSING_SERVERS=1`): otherwise a missing
/// server fails the test, in `available_servers`.
pub fn binary(flavor: Flavor) -> Option<ServerBinary> {
    let found = available_servers()
        .into_iter()
        .find(|binary| binary.flavor == flavor);
    if found.is_none() {
        println!(
            "skipped: {} not selected by REDLIMIT_SERVERS, or missing and \
             REDLIMIT_SKIP_MISSING_SERVERS=1",
            flavor.name()
        );
    }
    found
}

/// One test function per server binary: `per_server!(scenario)` makes
/// `scenario::redis_7_0`, `redis_8_2` and `valkey_9_1`, each running
/// `scenario(binary).await` on a multi-threaded runtime.
macro_rules! per_server {
    ($scenario:ident) => {
        mod $scenario {
            use redlimit_test_support::Flavor;

            async fn run(flavor: Flavor) {
                if let Some(binary) = crate::support::binary(flavor) {
                    println!("== {}", binary.name());
                    super::$scenario(binary).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis_7_0() {
                run(Flavor::Redis70).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn redis_8_2() {
                run(Flavor::Redis82).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn valkey_9_1() {
                run(Flavor::Valkey91).await;
            }
        }
    };
}
pub(crate) use per_server;

/// A cluster of `binary` with the module on every node, started off the runtime's
/// threads (it blocks for a second or two).
pub async fn start(builder: ClusterBuilder) -> Cluster {
    tokio::task::spawn_blocking(move || builder.start())
        .await
        .expect("the cluster failed to start")
}

/// The builder of a cluster of `binary` with the module on every node.
pub fn cluster_of(binary: &ServerBinary) -> ClusterBuilder {
    ClusterBuilder::new(binary).module(module_path())
}

/// A limiter on the cluster with room for a loaded machine (a 5 s timeout) that
/// returns errors instead of answering for the server, so every failure is seen.
pub fn limiter(cluster: &Cluster) -> RateLimiter {
    RateLimiter::builder(Backend::cluster(cluster.urls()).expect("valid urls"))
        .timeout(Duration::from_secs(5))
        .on_failure(FailurePolicy::Error)
        .build()
        .expect("a valid limiter")
}

/// `count` keys `<prefix>:<n>` owned by each primary, in primary order, with the owner.
pub fn keys_on_every_primary(cluster: &Cluster, prefix: &str, count: usize) -> Vec<(String, u16)> {
    let primaries = cluster.primaries();
    let topology = cluster.topology();
    let owner_of = |key: &str| {
        let slot = key_slot(key.as_bytes());
        topology
            .iter()
            .find(|node| node.primary && node.slots.iter().any(|r| r.contains(&slot)))
            .map(|node| node.port)
            .expect("every slot has an owner")
    };
    let mut keys = Vec::new();
    for primary in primaries {
        let mine = (0..)
            .map(|n| format!("{prefix}:{n}"))
            .filter(|key| owner_of(key) == primary)
            .take(count);
        keys.extend(mine.map(|key| (key, primary)));
    }
    keys
}

/// `RL.STATUS key` read with a plain connection on the primary that owns `key`.
pub fn owner_status(cluster: &Cluster, key: &str) -> Option<Status> {
    let port = cluster.owner_of(key.as_bytes());
    status(&mut cluster.connection(port), key)
}

/// `remaining` of `RL.STATUS` on the owner: what a request of cost 1 would leave.
pub fn owner_remaining(cluster: &Cluster, key: &str) -> i64 {
    owner_status(cluster, key)
        .unwrap_or_else(|| panic!("{key} is missing on its owner"))
        .number("remaining")
}

/// `RL.STATUS key` and `PTTL key` on the owner, in one `MULTI` (so at one instant
/// where the server freezes time): (status, PTTL).
pub fn status_and_pttl(cluster: &Cluster, key: &str) -> (Status, i64) {
    let port = cluster.owner_of(key.as_bytes());
    let mut con = cluster.connection(port);
    let (reply, pttl): (Value, i64) = redis::pipe()
        .atomic()
        .cmd("RL.STATUS")
        .arg(key)
        .cmd("PTTL")
        .arg(key)
        .query(&mut con)
        .unwrap_or_else(|e| panic!("RL.STATUS + PTTL {key} on port {port}: {e}"));
    let status = Status::from_reply(&reply)
        .unwrap_or_else(|| panic!("{key} is missing on its owner (port {port})"));
    (status, pttl)
}

/// Redirects and retries the nodes answered since their stats were reset
/// (`INFO errorstats`: `MOVED`, `ASK`, `TRYAGAIN`, `CLUSTERDOWN`, `CROSSSLOT`), summed
/// over the running nodes. (Other errors are left out: Redis 7.0 answers `ERR` to the
/// `CLIENT SETINFO` every new connection of the `redis` crate sends.)
pub fn redirects(cluster: &Cluster) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for port in cluster.ports() {
        let info: String = redis::cmd("INFO")
            .arg("errorstats")
            .query(&mut cluster.connection(port))
            .expect("INFO errorstats");
        for line in info.lines() {
            let Some((name, rest)) = line
                .strip_prefix("errorstat_")
                .and_then(|l| l.split_once(':'))
                .filter(|(name, _)| {
                    ["MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "CROSSSLOT"].contains(name)
                })
            else {
                continue;
            };
            let count: u64 = rest
                .strip_prefix("count=")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            *total.entry(name.to_owned()).or_insert(0) += count;
        }
    }
    total
}

/// `CONFIG RESETSTAT` on every running node.
pub fn reset_stats(cluster: &Cluster) {
    for port in cluster.ports() {
        let () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut cluster.connection(port))
            .expect("CONFIG RESETSTAT");
    }
}

/// The error code of a raw command that must fail (`CROSSSLOT`, `MOVED`, ...).
pub fn error_code(con: &mut Connection, cmd: &redis::Cmd) -> String {
    let reply: redis::RedisResult<Value> = cmd.query(con);
    let error = reply.expect_err("the command should fail");
    error.code().unwrap_or("(no code)").to_owned()
}

/// A policy that does not refill within a test (1 token per hour), so that what is
/// left is exactly the capacity minus what was counted.
pub fn slow_bucket(capacity: u64) -> Policy {
    Policy::token_bucket(capacity, 1, 3_600_000).expect("a valid policy")
}

/// **Known `redis` crate limitation** (0.32.7, cluster-async): to follow `ASK` it sends
/// `ASKING` on the target's multiplexed connection, waits for the reply, then sends the
/// command. Other tasks' commands come in between and consume the one-shot `ASKING`,
/// so the target answers `MOVED` back to the source, which answers `ASK` again, until
/// the retries run out (the `ASK` reaches the caller, reported `unavailable`) or the
/// decision times out, and the breaker opens. With 16 tasks deciding on a key moved to
/// a slot's importing node (and on that node's own keys), most decisions on the moved
/// key fail for as long as the slot is migrating (`asked_keys_under_concurrency`); a
/// single task sees no failure. Never a wrong answer: a command served thanks to
/// another's `ASKING` was itself redirected there. While `true`, the test checks the
/// failures are still there; once the client keeps `ASKING` with its command (one
/// pipeline), it fails: set it to `false`.
pub const ASKING_RACE: bool = true;

/// How the load counts an `ASK` or `MOVED` that reached the caller (see
/// [`ASKING_RACE`]): during a resharding, slots migrate for milliseconds each, so this
/// is rare (seen about once in 10,000 decisions while `redis-cli --cluster reshard`
/// moves keys under load).
pub const REDIRECT_NOT_FOLLOWED: &str = "redirect_not_followed";

/// A hot key of the load: one key, or two checked all-or-nothing (`RL.ALL`).
#[derive(Clone, Debug)]
pub enum Target {
    One(String, Policy),
    All(Vec<(String, Policy)>),
}

impl Target {
    /// Its keys, with their policies.
    pub fn keys(&self) -> Vec<(String, Policy)> {
        match self {
            Target::One(key, policy) => vec![(key.clone(), *policy)],
            Target::All(limits) => limits.clone(),
        }
    }
}

/// What the load saw, per key and in total.
#[derive(Debug, Default)]
pub struct Tally {
    /// Decisions made (any outcome, errors included).
    pub decisions: AtomicU64,
    /// When the server allowed a decision, per key.
    pub allowed_at: Mutex<BTreeMap<String, Vec<Instant>>>,
    /// Decisions the server answered (allowed or not).
    pub from_server: AtomicU64,
    /// Decisions answered by the fallback (in memory).
    pub from_fallback: AtomicU64,
    /// Per key, decisions not answered by the server (fallback or error).
    pub not_from_server: Mutex<BTreeMap<String, u64>>,
    /// Errors, by kind, with the first message of each kind.
    pub errors: Mutex<BTreeMap<String, (u64, String)>>,
    /// Per key, when the server last answered it.
    pub last_server_answer: Mutex<BTreeMap<String, Instant>>,
    /// Per limiter (its index in [`Load::start`]'s list), when the server last
    /// answered one of its tasks.
    pub last_server_answer_by_limiter: Mutex<BTreeMap<usize, Instant>>,
}

impl Tally {
    /// Errors counted, all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors
            .lock()
            .unwrap()
            .values()
            .map(|(count, _)| count)
            .sum()
    }

    /// Errors counted of `kind` ([`ErrorKind::as_str`](redlimit::ErrorKind::as_str) or
    /// [`REDIRECT_NOT_FOLLOWED`]).
    pub fn errors_of(&self, kind: &str) -> u64 {
        self.errors
            .lock()
            .unwrap()
            .get(kind)
            .map_or(0, |(count, _)| *count)
    }

    /// What the server allowed at `key`.
    pub fn allowed(&self, key: &str) -> u64 {
        self.allowed_before(key, None)
    }

    /// What the server allowed at `key` before `moment` (all of it for `None`).
    pub fn allowed_before(&self, key: &str, moment: Option<Instant>) -> u64 {
        let allowed = self.allowed_at.lock().unwrap();
        let times = allowed.get(key).map(Vec::as_slice).unwrap_or_default();
        let count = match moment {
            Some(moment) => times.iter().filter(|at| **at < moment).count(),
            None => times.len(),
        };
        u64::try_from(count).unwrap()
    }

    /// When the server allowed the `n`-th decision at `key` before `moment`, counting
    /// back from `moment` (1: the last one).
    pub fn allowed_nth_last_before(&self, key: &str, moment: Instant, n: usize) -> Option<Instant> {
        let allowed = self.allowed_at.lock().unwrap();
        let mut times: Vec<Instant> = allowed
            .get(key)?
            .iter()
            .copied()
            .filter(|at| *at < moment)
            .collect();
        times.sort_unstable();
        times
            .len()
            .checked_sub(n)
            .and_then(|i| times.get(i).copied())
    }

    /// Decisions at `key` not answered by the server.
    pub fn not_from_server(&self, key: &str) -> u64 {
        self.not_from_server
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    fn record(
        &self,
        limiter: usize,
        keys: &[String],
        result: Result<(bool, Source), redlimit::Error>,
    ) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        if !matches!(result, Ok((_, Source::Server))) {
            let mut missed = self.not_from_server.lock().unwrap();
            for key in keys {
                *missed.entry(key.clone()).or_insert(0) += 1;
            }
        }
        match result {
            Ok((allowed, Source::Server)) => {
                self.from_server.fetch_add(1, Ordering::Relaxed);
                self.last_server_answer_by_limiter
                    .lock()
                    .unwrap()
                    .insert(limiter, now);
                let mut last = self.last_server_answer.lock().unwrap();
                for key in keys {
                    last.insert(key.clone(), now);
                }
                drop(last);
                if allowed {
                    let mut allowed_at = self.allowed_at.lock().unwrap();
                    for key in keys {
                        allowed_at.entry(key.clone()).or_default().push(now);
                    }
                }
            }
            Ok((_, Source::Fallback)) => {
                self.from_fallback.fetch_add(1, Ordering::Relaxed);
            }
            Ok((_, other)) => panic!("unexpected source {other:?}"),
            Err(error) => {
                // A redirect the `redis` crate gave up following (see
                // `REDIRECT_NOT_FOLLOWED`) is told apart from other failures.
                let redirect = error.redis_error().is_some_and(|e| {
                    matches!(e.kind(), redis::ErrorKind::Ask | redis::ErrorKind::Moved)
                });
                let kind = if redirect {
                    REDIRECT_NOT_FOLLOWED
                } else {
                    error.kind().as_str()
                };
                let mut errors = self.errors.lock().unwrap();
                let entry = errors
                    .entry(kind.to_owned())
                    .or_insert_with(|| (0, error.to_string()));
                entry.0 += 1;
            }
        }
    }
}

/// Tasks deciding on `targets` round-robin (task `i` starts at target `i`) until
/// `stop` is set or `max_decisions` decisions were made in total.
pub struct Load {
    pub tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts `tasks` tasks; `limiters` are used in turn (task `i` takes
    /// `limiters[i % len]`), so tasks may differ in failure policy.
    pub fn start(
        limiters: &[RateLimiter],
        targets: &[Target],
        tasks: usize,
        max_decisions: u64,
    ) -> Load {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let targets = Arc::new(targets.to_vec());
        let tasks = (0..tasks)
            .map(|task| {
                let (tally, stop, targets) = (tally.clone(), stop.clone(), targets.clone());
                let which = task % limiters.len();
                let limiter = limiters[which].clone();
                tokio::spawn(async move {
                    let mut next = task;
                    while !stop.load(Ordering::Relaxed)
                        && tally.decisions.load(Ordering::Relaxed) < max_decisions
                    {
                        let target = &targets[next % targets.len()];
                        next += 1;
                        let keys: Vec<String> =
                            target.keys().into_iter().map(|(key, _)| key).collect();
                        let result = match target {
                            Target::One(key, policy) => limiter
                                .check(key, policy)
                                .await
                                .map(|d: Decision| (d.allowed, d.source)),
                            Target::All(limits) => limiter
                                .check_all(limits, 1)
                                .await
                                .map(|all| (all.allowed, all.source)),
                        };
                        if !matches!(result, Ok((_, Source::Server))) {
                            // Errors and fallback answers come at once: do not spin
                            // through the load while a shard is down.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        tally.record(which, &keys, result);
                    }
                })
            })
            .collect();
        Load { tally, stop, tasks }
    }

    /// Decisions made so far.
    pub fn decisions(&self) -> u64 {
        self.tally.decisions.load(Ordering::Relaxed)
    }

    /// Waits until `count` decisions in total were made (or the load ended).
    pub async fn until(&self, count: u64) {
        while self.decisions() < count && !self.tasks.iter().all(|t| t.is_finished()) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops the tasks and waits for them; returns the tally.
    pub async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("a load task panicked");
        }
        self.tally
    }
}
