//! A cache-only primary (no replica ever, no AOF, no save points, no fork) consumes
//! nothing a write propagates, so the module skips `RedisModule_Replicate` there (see
//! `module/src/propagation.rs`). These tests prove that no write is lost when a
//! consumer appears while traffic runs: a replica attaching (disk and diskless full
//! sync, and Valkey's dual-channel sync), AOF switched on, a backlog kept after the
//! replica left, Valkey's atomic slot migration out of a node without replicas, writes
//! inside MULTI/EXEC and scripts. Each ends with the consumer's dataset equal to the
//! primary's.
//!
//! Build the module first (`cargo build -p redlimit-module`).

#[path = "live/calls.rs"]
mod calls;

use calls::{servers, with_module};
use redis::Connection;
use redlimit_test_support::{Flavor, Server, ServerBinary, info_value, snapshot};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// `INFO redlimit` `propagation`: 1 when the module propagates writes.
fn propagating(con: &mut Connection) -> bool {
    info_value(con, "redlimit", "redlimit_propagation").as_deref() == Some("1")
}

/// `rdb_changes_since_last_save`: what the server counts as changes.
fn changes(con: &mut Connection) -> i64 {
    info_value(con, "persistence", "rdb_changes_since_last_save")
        .and_then(|value| value.parse().ok())
        .expect("INFO persistence has rdb_changes_since_last_save")
}

/// `DEBUG DIGEST`: one hash of the whole dataset, values and expiries.
fn digest(con: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(con).unwrap()
}

/// Traffic on a primary until stopped: every limiter kind on a few thousand keys, in
/// plain pipelines, MULTI/EXEC blocks and scripts. Policies refill slowly and fixed
/// windows last a day, so no key expires while a test runs (a 10-minute fixed window,
/// epoch-aligned, once ended between a digest and the restart that compared it).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

const CALLS: [&str; 5] = [
    "RL.TOKENBUCKET {} 1000 1 600000",
    "RL.THROTTLE {} 999 1 600",
    "RL.SLIDING {} 1000 600000",
    "RL.SLIDING {} 1000 600000 APPROX",
    "RL.FIXED {} 1000 86400000",
];

fn call(n: u64) -> redis::Cmd {
    let kind = n % 5;
    let template = CALLS[usize::try_from(kind).unwrap()];
    let key = format!("load:{kind}:{}", n.wrapping_mul(2_654_435_761) % 1_000);
    let mut cmd = redis::cmd("");
    for (i, word) in template.split_whitespace().enumerate() {
        let word = if word == "{}" { key.as_str() } else { word };
        if i == 0 {
            cmd = redis::cmd(word);
        } else {
            cmd.arg(word);
        }
    }
    cmd
}

impl Load {
    fn start(primary: &Server) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let mut con = primary.connection();
        let (stop_flag, counter) = (Arc::clone(&stop), Arc::clone(&sent));
        let thread = thread::spawn(move || {
            let mut n = 0u64;
            while !stop_flag.load(Ordering::Relaxed) {
                let mut pipe = redis::pipe();
                for _ in 0..50 {
                    pipe.add_command(call(n)).ignore();
                    n += 1;
                }
                pipe.query::<()>(&mut con).expect("pipeline");
                let mut block = redis::pipe();
                block.atomic();
                for _ in 0..5 {
                    block.add_command(call(n)).ignore();
                    n += 1;
                }
                block.query::<()>(&mut con).expect("MULTI/EXEC");
                let key = format!("eval:{}", n % 1_000);
                redis::cmd("EVAL")
                    .arg("redis.call('RL.TOKENBUCKET', KEYS[1], 1000, 1, 600000); return redis.call('RL.FIXED', KEYS[1] .. ':f', 1000, 86400000)")
                    .arg(1)
                    .arg(&key)
                    .query::<Vec<i64>>(&mut con)
                    .expect("EVAL");
                n += 2;
                counter.store(n, Ordering::Relaxed);
            }
        });
        Load { stop, sent, thread }
    }

    /// Lets the traffic run until `more` further calls were sent.
    fn run_for(&self, more: u64) {
        let target = self.sent.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.sent.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "the load stalled");
            thread::sleep(Duration::from_millis(5));
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the load thread panicked");
        self.sent.load(Ordering::Relaxed)
    }
}

/// A cache-only primary, checked to be skipping propagation.
fn cache_only(binary: &ServerBinary, args: &[&str]) -> Server {
    let primary = with_module(binary).args(args.iter().copied()).start();
    let mut con = primary.connection();
    assert!(
        !propagating(&mut con),
        "{}: a cache-only primary propagates",
        binary.name()
    );
    primary
}

/// Waits until the replica acknowledged every write, then compares the datasets.
/// (`WAIT` counts from this connection's last write, so it writes a marker first.)
fn assert_same_dataset(primary: &mut Connection, replica: &mut Connection, who: &str) {
    redis::cmd("SET")
        .arg("marker")
        .arg(1)
        .query::<()>(primary)
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(primary)
        .unwrap();
    assert_eq!(
        acked, 1,
        "{who}: the replica did not acknowledge the writes"
    );
    let keys: i64 = redis::cmd("DBSIZE").query(primary).unwrap();
    assert!(keys > 1_000, "{who}: only {keys} keys written");
    if digest(replica) != digest(primary) {
        panic!(
            "{who}: DEBUG DIGEST differs: {}",
            differing_keys(primary, replica)
        );
    }
}

/// The first keys whose value or expiry differs, with both sides' state, for the report.
fn differing_keys(primary: &mut Connection, replica: &mut Connection) -> String {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("*").query(primary).unwrap();
    let on_replica: Vec<String> = redis::cmd("KEYS").arg("*").query(replica).unwrap();
    keys.sort();
    let mut report = format!(
        "{} keys on the primary, {} on the replica",
        keys.len(),
        on_replica.len()
    );
    let mut shown = 0;
    for key in &keys {
        let (here, there) = (
            snapshot(primary, key.as_str()),
            snapshot(replica, key.as_str()),
        );
        if here != there && shown < 3 {
            report.push_str(&format!("\n{key}: primary {here:?}\n    replica {there:?}"));
            shown += 1;
        }
    }
    report
}

#[test]
fn a_cache_only_primary_skips_propagation_and_any_consumer_turns_it_on() {
    for binary in servers() {
        let who = binary.name();
        let primary = cache_only(&binary, &[]);
        let mut con = primary.connection();
        for n in 0..100 {
            call(n).query::<Vec<i64>>(&mut con).unwrap();
        }
        assert_eq!(
            changes(&mut con),
            0,
            "{who}: skipped writes count as changes"
        );
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("1gb")
            .query::<()>(&mut con)
            .unwrap();
        assert!(
            !propagating(&mut con),
            "{who}: an unrelated CONFIG SET turned it on"
        );
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("save")
            .arg("3600 1")
            .query::<()>(&mut con)
            .unwrap();
        assert!(
            propagating(&mut con),
            "{who}: save points do not turn it on"
        );
        call(0).query::<Vec<i64>>(&mut con).unwrap();
        assert_eq!(
            changes(&mut con),
            1,
            "{who}: a write after save points is not a change"
        );

        for args in [&["--appendonly", "yes"][..], &["--save", "3600 1"]] {
            let server = with_module(&binary).args(args.iter().copied()).start();
            assert!(propagating(&mut server.connection()), "{who}: {args:?}");
        }
        let primary = cache_only(&binary, &[]);
        redis::cmd("BGSAVE")
            .query::<String>(&mut primary.connection())
            .unwrap();
        assert!(
            propagating(&mut primary.connection()),
            "{who}: a fork leaves it off"
        );
        let replica = with_module(&binary).replica_of(&primary).start();
        replica.wait_for_sync();
        assert!(
            propagating(&mut replica.connection()),
            "{who}: a replica skips"
        );
    }
}

/// A replica attaching while traffic runs ends with the primary's dataset, whatever
/// the sync: `settings` go to both servers.
fn replica_attaching_under_load(binary: &ServerBinary, settings: &[&str], how: &str) {
    let who = format!("{}, {how}", binary.name());
    let primary = cache_only(binary, settings);
    let load = Load::start(&primary);
    load.run_for(5_000);
    let replica = with_module(binary)
        .args(settings.iter().copied())
        .module_args(["clock-offset-ms", "7200000"])
        .replica_of(&primary)
        .start();
    replica.wait_for_sync();
    load.run_for(5_000);
    let sent = load.finish();
    let mut con = primary.connection();
    assert!(
        propagating(&mut con),
        "{who}: still skipping with a replica"
    );
    assert_same_dataset(&mut con, &mut replica.connection(), &who);
    eprintln!("{who}: {sent} calls, digests equal");
}

#[test]
fn a_replica_attaching_under_load_gets_every_write() {
    for binary in servers() {
        replica_attaching_under_load(&binary, &["--repl-diskless-sync", "no"], "disk sync");
        replica_attaching_under_load(&binary, &["--repl-diskless-sync", "yes"], "diskless sync");
        if binary.flavor == Flavor::Valkey91 {
            replica_attaching_under_load(
                &binary,
                &[
                    "--repl-diskless-sync",
                    "yes",
                    "--dual-channel-replication-enabled",
                    "yes",
                ],
                "dual-channel sync",
            );
        }
    }
}

#[test]
fn aof_switched_on_under_load_keeps_every_write() {
    for binary in servers() {
        let who = binary.name();
        let primary = cache_only(&binary, &[]);
        let load = Load::start(&primary);
        load.run_for(5_000);
        let mut con = primary.connection();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("appendonly")
            .arg("yes")
            .query::<()>(&mut con)
            .unwrap();
        load.run_for(5_000);
        load.finish();
        primary.wait_for_background_saves();
        let before = digest(&mut con);
        let port = primary.port();
        let dir = primary.stop().expect("the server owned its directory");
        let restarted = with_module(&binary)
            .dir(dir.path())
            .port(port)
            .args(["--appendonly", "yes"])
            .start();
        assert_eq!(
            digest(&mut restarted.connection()),
            before,
            "{who}: the AOF lost writes"
        );
    }
}

#[test]
fn a_backlog_kept_after_the_replica_left_serves_its_return() {
    for binary in servers() {
        let who = binary.name();
        let primary = cache_only(&binary, &[]);
        let replica = with_module(&binary).replica_of(&primary).start();
        replica.wait_for_sync();
        let mut con = primary.connection();
        let partial_before = info_value(&mut con, "stats", "sync_partial_ok").unwrap();
        // The replica leaves: the primary keeps its backlog, then takes traffic alone.
        replica.pause();
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query::<i64>(&mut con)
            .unwrap();
        let load = Load::start(&primary);
        load.run_for(5_000);
        load.finish();
        replica.resume();
        let deadline = Instant::now() + Duration::from_secs(15);
        while info_value(&mut con, "stats", "sync_partial_ok").unwrap() == partial_before {
            assert!(
                Instant::now() < deadline,
                "{who}: the return was not a partial sync"
            );
            thread::sleep(Duration::from_millis(20));
        }
        replica.wait_for_sync();
        assert_same_dataset(&mut con, &mut replica.connection(), who);
    }
}

/// Valkey's atomic slot migration streams the writes made while it runs: a cache-only
/// source (a cluster without replicas) must propagate them from its fork on.
#[test]
fn an_atomic_slot_migration_from_a_cache_only_node_carries_every_write() {
    for binary in servers() {
        if binary.flavor != Flavor::Valkey91 {
            continue;
        }
        let node = || {
            let server = cache_only(&binary, &["--cluster-enabled", "yes"]);
            let mut con = server.connection();
            let id: String = redis::cmd("CLUSTER").arg("MYID").query(&mut con).unwrap();
            (server, con, id)
        };
        let (source, mut source_con, _) = node();
        let (target, mut target_con, target_id) = node();
        for (con, range) in [
            (&mut source_con, (0, 8191)),
            (&mut target_con, (8192, 16383)),
        ] {
            redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(range.0)
                .arg(range.1)
                .query::<()>(con)
                .unwrap();
        }
        redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(target.port())
            .query::<()>(&mut source_con)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cluster_ok(&mut source_con) || !cluster_ok(&mut target_con) {
            assert!(
                Instant::now() < deadline,
                "the two nodes never formed a cluster"
            );
            thread::sleep(Duration::from_millis(50));
        }
        // `{b}` hashes to slot 3,300, the source's.
        let keys: Vec<String> = (0..20).map(|i| format!("{{b}}{i}")).collect();
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&keys[0])
            .query(&mut source_con)
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let load = {
            let (stop, keys, mut con) = (Arc::clone(&stop), keys.clone(), source.connection());
            thread::spawn(move || {
                let mut allowed = vec![0i64; keys.len()];
                'load: while !stop.load(Ordering::Relaxed) {
                    for (i, key) in keys.iter().enumerate() {
                        match redis::cmd("RL.TOKENBUCKET")
                            .arg(key)
                            .arg(1_000_000)
                            .arg(1)
                            .arg(3_600_000)
                            .query::<Vec<i64>>(&mut con)
                        {
                            Ok(reply) => allowed[i] += reply[0],
                            // MOVED: the slot is the target's now.
                            Err(_) => break 'load,
                        }
                    }
                }
                allowed
            })
        };
        thread::sleep(Duration::from_millis(300));
        redis::cmd("CLUSTER")
            .arg("MIGRATESLOTS")
            .arg("SLOTSRANGE")
            .arg(slot)
            .arg(slot)
            .arg("NODE")
            .arg(&target_id)
            .query::<()>(&mut source_con)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while redis::cmd("RL.STATUS")
            .arg(&keys[0])
            .query::<redis::Value>(&mut target_con)
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "the slot never reached the target"
            );
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let allowed = load.join().expect("the load thread panicked");
        assert!(
            propagating(&mut source_con),
            "the migration's fork left propagation off"
        );
        for (key, allowed) in keys.iter().zip(allowed) {
            let status = redlimit_test_support::status(&mut target_con, key).expect("moved");
            // RL.STATUS answers as a call of cost 1 would.
            assert_eq!(
                status.number("remaining"),
                1_000_000 - allowed - 1,
                "{key}: {allowed} calls allowed on the source"
            );
        }
    }
}

fn cluster_ok(con: &mut Connection) -> bool {
    let info: String = redis::cmd("CLUSTER").arg("INFO").query(con).unwrap();
    info.contains("cluster_state:ok")
}
