//! The client follows a Sentinel failover by itself, and the limiter state survives it.
//!
//! On each server (Redis 7.0, Redis 8.2, Valkey 9.1; each a test of its own): a primary
//! and a replica with the module, three sentinels (quorum 2, `down-after-milliseconds`
//! 1000). A [`RateLimiter`] on [`Backend::sentinel`] exhausts a key, then a task decides
//! continuously (one decision a millisecond) while the primary is killed (SIGKILL). The
//! sentinels promote the replica; the limiter's connection fails, its failure policy
//! answers meanwhile, and a later call reconnects through the sentinels to the new
//! primary. Then:
//!
//! - decisions come from the server again (`Source::Server`), on the new primary;
//! - the key exhausted before the kill is still exhausted there, an `RL.ALL` pair used
//!   up before it is still used up, and a lease taken before it is still held;
//! - every decision acknowledged before a `WAIT 1` on the old primary is counted on the
//!   new one; the rest of the loss (decisions allowed by the old primary, not yet
//!   replicated when it died) is measured and printed, with the time from the kill to
//!   the first decision of the new primary and the decisions the failure policy
//!   answered meanwhile.
//!
//! A sentinel that hangs is tolerated when it is not the first of the client's list
//! (the first one blocks the client: an ignored test shows it).
//!
//! A second scenario moves the primary on purpose (`SENTINEL FAILOVER`): the old
//! primary stays up and turns replica, so the client's connection is not refused but
//! its writes are (`READONLY`), or the connection is closed by the demotion.
//!
//! Build the module first (`cargo build -p redlimit-module`). Nothing here asserts a
//! duration: the figures are printed, the waits are bounded polls.

#[path = "sentinel/acl.rs"]
mod acl;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use redis::sentinel::{SentinelClient, SentinelServerType};
use redlimit::{Backend, Decision, FailurePolicy, Policy, RateLimiter, Source};
use redlimit_test_support::{
    Flavor, SentinelBuilder, SentinelGroup, available_servers, info_value, module_path, status,
};

/// The load key's bucket: a million tokens, one more every 10^9 ms (11.6 days), so
/// `capacity - remaining` is exactly the number of requests it admitted during a test.
const LOAD_CAPACITY: u64 = 1_000_000;
const LOAD_REFILL_MS: u64 = 1_000_000_000;
/// The exhausted key's bucket: 5 tokens, one more an hour.
const SMALL_CAPACITY: u64 = 5;
const SMALL_REFILL_MS: u64 = 3_600_000;
/// How long one decision may wait for the server: generous, the machine is shared.
const DECISION_TIMEOUT: Duration = Duration::from_millis(250);
/// The breaker opens after 2 failures and probes the server every 100 ms.
const BREAKER_FAILURES: u32 = 2;
const COOL_DOWN: Duration = Duration::from_millis(100);
/// One decision of the load task per this.
const LOAD_PACE: Duration = Duration::from_millis(1);
/// How long the load runs before the kill.
const LOAD_BEFORE_KILL: Duration = Duration::from_millis(500);
/// The load task stops by itself after this, whatever happens.
const LOAD_LIMIT: Duration = Duration::from_secs(60);
/// How long the client may take to decide on the new primary after the sentinels name it.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(20);
/// How long Sentinel may take to demote the old primary after a switchover: about 10 s
/// here (it acts on what its `INFO` polls, every 10 s, report), but a run on a loaded
/// machine outlasted a 20 s wait.
const DEMOTION_TIMEOUT: Duration = Duration::from_secs(40);

#[test]
fn redis_7_0_client_follows_a_failover_and_the_state_survives() {
    failover_under_load(Flavor::Redis70);
}

#[test]
fn redis_8_2_client_follows_a_failover_and_the_state_survives() {
    failover_under_load(Flavor::Redis82);
}

#[test]
fn valkey_9_1_client_follows_a_failover_and_the_state_survives() {
    failover_under_load(Flavor::Valkey91);
}

/// One sentinel hangs (SIGSTOP: connections are accepted, nothing is answered), the
/// other two (quorum 2) fail over, and the client, which asks the sentinels in the
/// order given and the hung one last, follows.
#[test]
fn redis_8_2_client_follows_a_failover_with_the_last_sentinel_hung() {
    failover_under_load_with(Flavor::Redis82, Some(SentinelFault::Hung(2)));
}

/// A dead sentinel, even the first of the list, refuses connections: the client asks
/// the next one at once and follows.
#[test]
fn valkey_9_1_client_follows_a_failover_with_the_first_sentinel_dead() {
    failover_under_load_with(Flavor::Valkey91, Some(SentinelFault::Dead(0)));
}

/// The same with the hung sentinel first in the client's list: like a host that dies
/// with the primary and the sentinel on it. redis 0.32's `SentinelClient` asks the
/// sentinels one after the other over connections without a response timeout, so with
/// [`Backend::sentinel`] the lookup would wait on the hung sentinel until the limiter's
/// timeout cancels it, on every attempt. [`Backend::sentinels`] asks them all at once
/// and takes the first primary named: the hung one delays nothing.
#[test]
fn redis_8_2_client_follows_a_failover_with_the_first_sentinel_hung() {
    failover_under_load_with(Flavor::Redis82, Some(SentinelFault::Hung(0)));
}

#[test]
fn redis_8_2_client_follows_a_switchover_to_the_replica() {
    switchover(Flavor::Redis82);
}

#[test]
fn valkey_9_1_client_follows_a_switchover_to_the_replica() {
    switchover(Flavor::Valkey91);
}

/// With `min-replicas-to-write 1` the old primary refuses writes (`NOREPLICAS`) as soon
/// as its replica leaves it, so no decision is counted on it after the promotion. The
/// client takes that refusal as "this is not the primary any more": it answers by the
/// failure policy and asks the sentinels again, as for `READONLY`. (With one replica the
/// new primary refuses writes too until the old one has resynced: the failure policy
/// answers meanwhile.)
#[test]
fn redis_8_2_min_replicas_to_write_closes_the_switchover_window() {
    switchover_with(Flavor::Redis82, &["--min-replicas-to-write", "1"]);
}

/// A group of `flavor` with the module, or `None` (said) when the server is missing.
fn group(flavor: Flavor) -> Option<SentinelGroup> {
    group_with(flavor, &[])
}

/// As [`group`], with more arguments for the primary and the replica.
fn group_with(flavor: Flavor, server_args: &[&str]) -> Option<SentinelGroup> {
    let Some(binary) = available_servers()
        .into_iter()
        .find(|binary| binary.flavor == flavor)
    else {
        eprintln!(
            "skipped: {} not found; run scripts/install-deps.sh",
            flavor.name()
        );
        return None;
    };
    Some(
        SentinelBuilder::new(&binary)
            .module(module_path())
            .server_args(server_args.iter().copied())
            .start(),
    )
}

/// A limiter following the group's primary through its sentinels.
/// A limiter on [`Backend::sentinels`]: every sentinel asked at once.
fn limiter_asking_all(group: &SentinelGroup) -> RateLimiter {
    let backend = Backend::sentinels(group.sentinel_urls(), group.master_name(), None)
        .expect("valid sentinel URLs");
    RateLimiter::builder(backend)
        .timeout(DECISION_TIMEOUT)
        .circuit_breaker(BREAKER_FAILURES, COOL_DOWN)
        .on_failure(FailurePolicy::Fallback)
        .build()
        .expect("a positive timeout")
}

fn limiter(group: &SentinelGroup) -> RateLimiter {
    let sentinel = SentinelClient::build(
        group.sentinel_urls(),
        group.master_name().to_owned(),
        None,
        SentinelServerType::Master,
    )
    .expect("valid sentinel URLs");
    RateLimiter::builder(Backend::sentinel(sentinel))
        .timeout(DECISION_TIMEOUT)
        .circuit_breaker(BREAKER_FAILURES, COOL_DOWN)
        .on_failure(FailurePolicy::Fallback)
        .build()
        .expect("a positive timeout")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn small_policy() -> Policy {
    Policy::token_bucket(SMALL_CAPACITY, 1, SMALL_REFILL_MS).expect("a valid policy")
}

fn load_policy() -> Policy {
    Policy::token_bucket(LOAD_CAPACITY, 1, LOAD_REFILL_MS).expect("a valid policy")
}

/// Exhausts `key` through the limiter: 5 allowed, then denied, all by the server.
async fn exhaust(limiter: &RateLimiter, key: &str, who: &str) {
    for remaining in (0..SMALL_CAPACITY).rev() {
        let decision = limiter.check(key, &small_policy()).await.unwrap();
        assert_eq!(
            (decision.allowed, decision.remaining, decision.source),
            (true, remaining, Source::Server),
            "{who}: {decision:?}"
        );
    }
    let denied = limiter.check(key, &small_policy()).await.unwrap();
    assert_eq!(
        (denied.allowed, denied.source),
        (false, Source::Server),
        "{who}: {denied:?}"
    );
}

/// An `RL.ALL` pair (a one-request sliding window and a token bucket; no epoch-aligned
/// window, which could end during a test) used up, and the only lease of a key taken.
fn window_pair() -> [(&'static str, Policy); 2] {
    [
        ("{sentinel}:minute", Policy::sliding(1, 3_600_000).unwrap()),
        (
            "{sentinel}:bucket",
            Policy::token_bucket(100, 1, 3_600_000).unwrap(),
        ),
    ]
}

fn one_slot() -> redlimit::Concurrency {
    redlimit::Concurrency::new(1, 3_600_000).unwrap()
}

async fn hold_other_kinds(limiter: &RateLimiter, who: &str) {
    let all = limiter.check_all(&window_pair(), 1).await.unwrap();
    assert!(
        all.allowed && all.source == Source::Server,
        "{who}: {all:?}"
    );
    let lease = limiter
        .acquire("{sentinel}:slots", &one_slot(), "job-1")
        .await
        .unwrap();
    assert!(
        lease.allowed && lease.source == Source::Server,
        "{who}: {lease:?}"
    );
}

/// On the new primary: the window pair is still used up, the lease still held.
async fn other_kinds_still_held(limiter: &RateLimiter, who: &str) {
    let all = limiter.check_all(&window_pair(), 1).await.unwrap();
    assert_eq!(
        (all.allowed, all.source, all.decisions[1].remaining),
        // Each key's reply is as if it alone decided: the bucket's one token spent, and
        // this request's.
        (false, Source::Server, 98),
        "{who}: the RL.ALL pair after the failover: {all:?}"
    );
    let lease = limiter
        .acquire("{sentinel}:slots", &one_slot(), "job-2")
        .await
        .unwrap();
    assert_eq!(
        (lease.allowed, lease.source),
        (false, Source::Server),
        "{who}: the lease taken before the failover: {lease:?}"
    );
    assert!(
        limiter.release("{sentinel}:slots", "job-1").await.unwrap(),
        "{who}: job-1's lease survived"
    );
}

/// One decision of the load task.
#[derive(Clone, Copy, Debug)]
struct Record {
    started: Instant,
    finished: Instant,
    allowed: bool,
    source: Source,
}

/// Stops the load task, and counts its decisions answered by a server.
#[derive(Clone, Debug, Default)]
struct LoadControl {
    stop: Arc<AtomicBool>,
    by_server: Arc<AtomicUsize>,
}

impl LoadControl {
    /// Lets the load task make `more` decisions answered by a server from now on (a
    /// bounded wait), then stops it.
    fn stop_after(&self, more: usize, who: &str) {
        let from = self.by_server.load(Ordering::Relaxed);
        let deadline = Instant::now() + FOLLOW_TIMEOUT;
        while self.by_server.load(Ordering::Relaxed) < from + more {
            assert!(
                Instant::now() < deadline,
                "{who}: the load task got no server decision within {FOLLOW_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Decides on `key` once per [`LOAD_PACE`] until stopped (or [`LOAD_LIMIT`]).
async fn load(limiter: RateLimiter, key: &'static str, control: LoadControl) -> Vec<Record> {
    let policy = load_policy();
    let mut records = Vec::new();
    let mut pace = tokio::time::interval(LOAD_PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit = Instant::now() + LOAD_LIMIT;
    while !control.stop.load(Ordering::Relaxed) && Instant::now() < limit {
        pace.tick().await;
        let started = Instant::now();
        let decision: Decision = limiter
            .check(key, &policy)
            .await
            .expect("the fallback answers when the server cannot");
        if decision.source == Source::Server {
            control.by_server.fetch_add(1, Ordering::Relaxed);
        }
        records.push(Record {
            started,
            finished: Instant::now(),
            allowed: decision.allowed,
            source: decision.source,
        });
    }
    records
}

/// What a failover cost the load task.
#[derive(Debug)]
struct Figures {
    /// Allowed by the server, finished before the kill.
    allowed_before_kill: u64,
    /// Acknowledged before `WAIT 1` confirmed the replica had them.
    acknowledged_before_wait: u64,
    /// Allowed by the server over the whole run.
    allowed_by_servers: u64,
    /// Answered by the failure policy from the kill until the new primary answered.
    by_failure_policy: u64,
    /// From the kill to the end of the first decision the new primary answered.
    kill_to_new_primary: Duration,
    /// From the kill to the moment every sentinel named the new primary.
    kill_to_sentinels: Duration,
    /// Requests the new primary's bucket counted.
    counted_on_new_primary: u64,
}

impl Figures {
    /// Allowed by a server but not counted by the new primary.
    fn lost(&self) -> i64 {
        i64::try_from(self.allowed_by_servers).unwrap_or(i64::MAX)
            - i64::try_from(self.counted_on_new_primary).unwrap_or(i64::MAX)
    }
}

fn failover_under_load(flavor: Flavor) {
    failover_under_load_with(flavor, None);
}

/// What happens to one sentinel just before the primary is killed.
#[derive(Clone, Copy, Debug)]
enum SentinelFault {
    /// Frozen (SIGSTOP): connections accepted, nothing answered.
    Hung(usize),
    /// Killed: connections refused.
    Dead(usize),
}

/// [`failover_under_load`], with a sentinel (by its index in the client's list) hung or
/// dead before the kill.
fn failover_under_load_with(flavor: Flavor, fault: Option<SentinelFault>) {
    let Some(mut group) = group(flavor) else {
        return;
    };
    let who = flavor.name();
    let rt = runtime();
    let limiter = match fault {
        Some(SentinelFault::Hung(0)) => limiter_asking_all(&group),
        _ => limiter(&group),
    };
    let old_port = group.primary_port();
    let replica_port = *group
        .server_ports()
        .iter()
        .find(|port| **port != old_port)
        .expect("a replica");

    // Before the kill: a key exhausted, replicated for sure.
    rt.block_on(exhaust(&limiter, "{sentinel}:exhausted", who));
    rt.block_on(hold_other_kinds(&limiter, who));
    let mut old = group.server(old_port).connection();

    let control = LoadControl::default();
    let task = rt.spawn(load(limiter.clone(), "{sentinel}:load", control.clone()));
    std::thread::sleep(LOAD_BEFORE_KILL);
    // Everything acknowledged before WAIT returns is on the replica.
    let wait_started = Instant::now();
    // `WAIT` counts from this connection's own last write: a marker first.
    let () = redis::cmd("SET")
        .arg("marker")
        .arg(1)
        .query(&mut old)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query(&mut old)
        .unwrap();
    assert_eq!(acked, 1, "{who}: the replica did not acknowledge");
    std::thread::sleep(Duration::from_millis(100));

    match fault {
        Some(SentinelFault::Hung(index)) => group.pause_sentinel(index),
        Some(SentinelFault::Dead(index)) => group.kill_sentinel(index),
        None => {}
    }
    let killed_at = Instant::now();
    assert_eq!(group.kill_primary(), old_port, "{who}");
    let killed_done = Instant::now();
    let new_port = group.wait_for_failover(old_port);
    let kill_to_sentinels = killed_at.elapsed();
    assert_eq!(new_port, replica_port, "{who}: the replica is promoted");

    // The client reaches the new primary (a probe on another key), then the load task
    // makes a few more decisions there.
    let follow_deadline = Instant::now() + FOLLOW_TIMEOUT;
    let decided_on_new = rt.block_on(async {
        loop {
            let decision = limiter.peek("{sentinel}:probe", &load_policy(), 0).await;
            if decision.is_ok_and(|d| d.source == Source::Server) {
                return true;
            }
            if Instant::now() > follow_deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(
        decided_on_new,
        "{who}: the client did not reach the new primary within {FOLLOW_TIMEOUT:?} after \
         the sentinels named it\n{}",
        group.logs()
    );
    // A few more of the load task's decisions on the new primary.
    control.stop_after(20, who);
    let records = rt.block_on(task).expect("the load task ends");

    // The exhausted key is still exhausted, on the new primary.
    let denied = rt
        .block_on(limiter.check("{sentinel}:exhausted", &small_policy()))
        .unwrap();
    assert_eq!(
        (denied.allowed, denied.remaining, denied.source),
        (false, 0, Source::Server),
        "{who}: the key exhausted before the failover: {denied:?}"
    );
    rt.block_on(other_kinds_still_held(&limiter, who));
    let mut new = group.server(new_port).connection();
    let report = status(&mut new, "{sentinel}:exhausted").expect("the key is on the new primary");
    assert_eq!(
        (report.number("allowed"), report.number("remaining")),
        (0, 0),
        "{who}: {report:?}"
    );

    let load_status = status(&mut new, "{sentinel}:load").expect("the load key survived");
    let remaining = u64::try_from(load_status.number("remaining")).unwrap();
    // `remaining` is what a further request would leave: capacity - counted - 1.
    let counted_on_new_primary = LOAD_CAPACITY - 1 - remaining;

    let server_allowed = |record: &&Record| record.source == Source::Server && record.allowed;
    let first_on_new = records
        .iter()
        .find(|record| record.source == Source::Server && record.started > killed_done)
        .copied()
        .unwrap_or_else(|| panic!("{who}: no load decision reached the new primary"));
    let figures = Figures {
        allowed_before_kill: records
            .iter()
            .filter(server_allowed)
            .filter(|r| r.finished < killed_at)
            .count() as u64,
        acknowledged_before_wait: records
            .iter()
            .filter(server_allowed)
            .filter(|r| r.finished < wait_started)
            .count() as u64,
        allowed_by_servers: records.iter().filter(server_allowed).count() as u64,
        by_failure_policy: records
            .iter()
            .filter(|r| r.finished >= killed_at && r.finished <= first_on_new.finished)
            .filter(|r| r.source != Source::Server)
            .count() as u64,
        kill_to_new_primary: first_on_new.finished - killed_at,
        kill_to_sentinels,
        counted_on_new_primary,
    };
    let sources = count_sources(&records);
    println!(
        "{who}: failover figures: kill -> every sentinel names the new primary {:?}; \
         kill -> first decision by the new primary {:?}; answered by the failure policy \
         (fallback) meanwhile {}; allowed by the old primary before the kill {}; allowed \
         by the servers in all {}; counted on the new primary {}; decisions lost {}; \
         sources over the run {sources:?}",
        figures.kill_to_sentinels,
        figures.kill_to_new_primary,
        figures.by_failure_policy,
        figures.allowed_before_kill,
        figures.allowed_by_servers,
        figures.counted_on_new_primary,
        figures.lost(),
    );

    // Nothing acknowledged before the WAIT is lost; nothing is counted that no decision
    // asked for (a request in flight at the kill may have been counted unanswered, and
    // then the failure policy answered it).
    assert!(
        figures.counted_on_new_primary >= figures.acknowledged_before_wait,
        "{who}: {figures:?}"
    );
    assert!(
        figures.counted_on_new_primary <= figures.allowed_by_servers + figures.by_failure_policy,
        "{who}: {figures:?}"
    );
    assert!(figures.allowed_before_kill > 0, "{who}: {figures:?}");
    assert!(
        figures.allowed_by_servers > figures.allowed_before_kill,
        "{who}: the new primary allowed load decisions: {figures:?}"
    );
    // The new primary decided (it ran RL.TOKENBUCKET itself, not only RL.SETSTATE).
    let calls: u64 = info_value(&mut new, "redlimit", "redlimit_tokenbucket_calls")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    assert!(calls > 0, "{who}: the new primary ran no RL.TOKENBUCKET");
}

/// How many decisions came from each source.
fn count_sources(records: &[Record]) -> Vec<(&'static str, usize)> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for record in records {
        let name = record.source.as_str();
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    counts
}

/// `SENTINEL FAILOVER`: the primary moves while both servers stay up, under load.
///
/// Sentinel promotes the replica at once but demotes the old primary only when it next
/// sees it claiming to be a primary, some seconds later (8 s in Redis' sentinel.c).
/// Until then the old primary accepts writes, and a client connected to it keeps
/// deciding there: those decisions are lost when it resyncs as a replica. The client
/// moves when that connection fails (`READONLY`, or the connection closed by the
/// demotion). Printed: how long that window was and how many decisions it lost.
fn switchover(flavor: Flavor) {
    switchover_with(flavor, &[]);
}

/// [`switchover`] with more arguments for the data nodes.
fn switchover_with(flavor: Flavor, server_args: &[&str]) {
    let Some(group) = group_with(flavor, server_args) else {
        return;
    };
    let who = flavor.name();
    let rt = runtime();
    let limiter = limiter(&group);
    let old_port = group.primary_port();

    rt.block_on(exhaust(&limiter, "{switch}:exhausted", who));
    let control = LoadControl::default();
    let task = rt.spawn(load(limiter.clone(), "{switch}:load", control.clone()));
    std::thread::sleep(LOAD_BEFORE_KILL);
    let mut old = group.server(old_port).connection();
    let wait_started = Instant::now();
    // `WAIT` counts from this connection's own last write: a marker first.
    let () = redis::cmd("SET")
        .arg("marker")
        .arg(1)
        .query(&mut old)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5_000)
        .query(&mut old)
        .unwrap();
    assert_eq!(acked, 1, "{who}: the replica did not acknowledge");

    let started = Instant::now();
    group.start_failover();
    let new_port = group.wait_for_failover(old_port);
    let sentinels_named = started.elapsed();
    // Bounded poll for the demotion of the old primary.
    let demote_deadline = Instant::now() + DEMOTION_TIMEOUT;
    while group.role(old_port).as_deref() != Some("slave") {
        assert!(
            Instant::now() < demote_deadline,
            "{who}: the old primary was not demoted within {DEMOTION_TIMEOUT:?}\n{}",
            group.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let demoted = Instant::now();

    // Every decision the load task starts after the demotion that the server answers is
    // the new primary's (the old one refuses writes): wait for one.
    let follow_deadline = Instant::now() + FOLLOW_TIMEOUT;
    let followed = rt.block_on(async {
        loop {
            let decision = limiter.check("{switch}:probe", &small_policy()).await;
            if decision.is_ok_and(|d| d.source == Source::Server) {
                return true;
            }
            if Instant::now() > follow_deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert!(followed, "{who}: the client did not reach the new primary");
    // A few more of the load task's decisions on the new primary.
    control.stop_after(20, who);
    let records = rt.block_on(task).expect("the load task ends");

    let mut new = group.server(new_port).connection();
    let report = status(&mut new, "{switch}:load").expect("the load key survived");
    let counted = LOAD_CAPACITY - 1 - u64::try_from(report.number("remaining")).unwrap();
    let server_allowed = |record: &&Record| record.source == Source::Server && record.allowed;
    let allowed = records.iter().filter(server_allowed).count() as u64;
    let acknowledged_before_wait = records
        .iter()
        .filter(server_allowed)
        .filter(|r| r.finished < wait_started)
        .count() as u64;
    let on_old_after_promotion = records
        .iter()
        .filter(server_allowed)
        .filter(|r| r.started > started + sentinels_named && r.finished < demoted)
        .count();
    let first_after_demotion = records
        .iter()
        .find(|r| r.source == Source::Server && r.started > demoted)
        .map(|r| r.finished - demoted);
    println!(
        "{who}: switchover figures: SENTINEL FAILOVER -> every sentinel names the new \
         primary {sentinels_named:?}; -> old primary demoted {:?}; decisions the old \
         primary allowed after the sentinels named the new one {on_old_after_promotion}; \
         demotion -> first decision by the new primary {first_after_demotion:?}; allowed \
         by the servers {allowed}; counted on the new primary {counted}; decisions lost \
         {}; sources over the run {:?}",
        demoted - started,
        i128::from(allowed) - i128::from(counted),
        count_sources(&records),
    );
    assert!(counted >= acknowledged_before_wait, "{who}");

    let denied = rt
        .block_on(limiter.check("{switch}:exhausted", &small_policy()))
        .unwrap();
    assert_eq!(
        (denied.allowed, denied.source),
        (false, Source::Server),
        "{who}: {denied:?}"
    );
}
