//! A replica holds exactly the primary's limiter state, whatever its own clock says:
//! the primary replicates resulting states (`RL.SETSTATE`), never a time-dependent
//! command, and replicates nothing at all for denied, PEEK and COST 0 calls. Expiry
//! happens on the primary and reaches the replica as a deletion. Other clients, too,
//! must see no write from a call that changes nothing (`WATCH`).
//!
//! Every test runs against every server found by `available_servers()`; build the module
//! first (`cargo build -p redlimit-module`). Time moves with the module's clock offset,
//! never with sleeps; the only waits are bounded polls for an event (sync, expiry).

use std::thread;
use std::time::{Duration, Instant};

use redis::Connection;
use redlimit_core::{BucketState, Limiter, Timestamp, TokenBucket};
use redlimit_test_support::{
    KeySnapshot, Server, ServerBinary, ServerBuilder, available_servers, info_value, module_path,
    set_clock_offset, snapshot, status, stored_state,
};

fn servers() -> Vec<ServerBinary> {
    let servers = available_servers();
    if servers.is_empty() {
        eprintln!("skipped: no server found; run scripts/install-deps.sh");
    }
    servers
}

/// A server of `binary` with the redlimit module.
fn with_module(binary: &ServerBinary) -> ServerBuilder {
    ServerBuilder::new(binary).module(module_path())
}

/// A primary and a synced replica, both with the module. The replica's clock is two hours
/// ahead of the primary's from the start, so any decision it re-ran would differ.
fn primary_and_replica(binary: &ServerBinary, primary_args: &[&str]) -> (Server, Server) {
    let primary = with_module(binary)
        .args(primary_args.iter().copied())
        .start();
    let replica = with_module(binary)
        .module_args(["clock-offset-ms", "7200000"])
        .replica_of(&primary)
        .start();
    replica.wait_for_sync();
    (primary, replica)
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// `command key args...` (args split on spaces).
fn command(command: &str, key: &[u8], args: &str) -> redis::Cmd {
    let mut cmd = redis::cmd(command);
    cmd.arg(key);
    for arg in args.split_whitespace() {
        cmd.arg(arg);
    }
    cmd
}

/// A limiting command's reply; panics naming the server on an error.
fn decide(con: &mut Connection, who: &str, name: &str, key: &[u8], args: &str) -> Vec<i64> {
    command(name, key, args)
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: {name} {} {args}: {e}", show(key)))
}

fn tokenbucket(con: &mut Connection, who: &str, key: &[u8], args: &str) -> Vec<i64> {
    decide(con, who, "RL.TOKENBUCKET", key, args)
}

fn throttle(con: &mut Connection, who: &str, key: &[u8], args: &str) -> Vec<i64> {
    decide(con, who, "RL.THROTTLE", key, args)
}

/// `WAIT 1 5000` on the primary: every write so far has reached the replica.
fn wait_for_replica(primary: &mut Connection, who: &str) {
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5_000).query(primary).unwrap();
    assert_eq!(
        acked, 1,
        "{who}: the replica did not acknowledge the writes"
    );
}

fn master_repl_offset(primary: &mut Connection) -> i64 {
    info_value(primary, "replication", "master_repl_offset")
        .and_then(|value| value.parse().ok())
        .expect("INFO replication has master_repl_offset")
}

/// Every key of the current database, sorted.
fn keys(con: &mut Connection) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.sort();
    keys
}

/// The key's absolute expiry is the moment its stored state is back to "no key".
fn assert_expiry_follows_state(snap: &KeySnapshot, who: &str) {
    let limiter = Limiter::decode(&snap.state)
        .unwrap_or_else(|e| panic!("{who}: stored state does not decode ({e}): {snap:?}"));
    let idle_ms = limiter.idle_at().as_micros().div_ceil(1_000);
    assert_eq!(
        snap.expire_at_ms,
        i64::try_from(idle_ms).unwrap(),
        "{who}: PEXPIREAT is not the state's idle moment: {limiter:?}"
    );
}

/// `DEBUG DIGEST`: one hash of the whole dataset, values and expiries.
fn dataset_digest(con: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(con).unwrap()
}

/// The replica holds the same keys as the primary and, for every limiter, the same
/// bytes, digest and absolute expiry. Returns how many limiters were compared.
fn assert_replica_matches(primary: &mut Connection, replica: &mut Connection, who: &str) -> usize {
    wait_for_replica(primary, who);
    assert_eq!(
        dataset_digest(replica),
        dataset_digest(primary),
        "{who}: DEBUG DIGEST differs"
    );
    let on_primary = keys(primary);
    assert_eq!(keys(replica), on_primary, "{who}: keys differ");
    let mut limiters = 0;
    for key in &on_primary {
        let kind: String = redis::cmd("TYPE").arg(key).query(primary).unwrap();
        if kind != "redlimit0" {
            continue;
        }
        let here = snapshot(primary, key).unwrap();
        assert_expiry_follows_state(&here, &format!("{who}, primary, {}", show(key)));
        assert_eq!(
            snapshot(replica, key).as_ref(),
            Some(&here),
            "{who}: {} differs on the replica",
            show(key)
        );
        limiters += 1;
    }
    limiters
}

/// A token bucket of 10 tokens, one a minute, missing `tokens` at `at_micros`.
fn bucket(tokens: u64, at_micros: u64) -> Limiter {
    Limiter::TokenBucket(
        TokenBucket::new(10, 1, 60_000).unwrap(),
        BucketState {
            deficit: tokens * 60_000 * 1_000,
            at: Timestamp::from_micros(at_micros),
        },
    )
}

#[test]
fn replica_holds_exactly_the_primary_state_whatever_its_clock() {
    for binary in servers() {
        let who = binary.name();
        // Written before the replica exists: reaches it by the initial full sync (RDB).
        let primary = with_module(&binary).start();
        let mut p = primary.connection();
        set_clock_offset(&mut p, 1_000);
        let reply = tokenbucket(&mut p, who, b"pre:bucket", "10 1 60000 COST 3");
        assert_eq!(reply[..3], [1, 10, 7], "{who}");
        let reply = throttle(&mut p, who, b"pre:cell", "4 1 60");
        assert_eq!(reply[..3], [0, 5, 4], "{who}");
        let reply = tokenbucket(&mut p, who, b"tb:gone", "3 1 1000");
        assert_eq!(reply[..3], [1, 3, 2], "{who}");

        let replica = with_module(&binary)
            .module_args(["clock-offset-ms", "7200000"])
            .replica_of(&primary)
            .start();
        replica.wait_for_sync();
        let mut r = replica.connection();
        assert_eq!(assert_replica_matches(&mut p, &mut r, who), 3, "{who}");

        // The timeline, on the primary, while its clock moves.
        for remaining in [4, 3, 2] {
            let reply = tokenbucket(&mut p, who, b"tb:a", "5 1 1000");
            assert_eq!(reply[..4], [1, 5, remaining, 0], "{who}: {reply:?}");
        }
        set_clock_offset(&mut p, 1_500);
        let reply = tokenbucket(&mut p, who, b"tb:a", "5 1 1000 PEEK");
        assert_eq!(reply[..4], [1, 5, 1, 0], "{who}: PEEK {reply:?}");
        let reply = tokenbucket(&mut p, who, b"tb:a", "5 1 1000 COST 0");
        assert_eq!(reply[..4], [1, 5, 2, 0], "{who}: COST 0 {reply:?}");
        let reply = tokenbucket(&mut p, who, b"tb:a", "5 1 1000 COST 5");
        assert_eq!(reply[..3], [0, 5, 2], "{who}: denied {reply:?}");
        let reply = tokenbucket(&mut p, who, b"tb:a", "5 1 1000 COST 4 MAXWAIT 3000");
        assert_eq!(reply[..3], [1, 5, 0], "{who}: MAXWAIT borrows {reply:?}");
        assert!((1..=2_000).contains(&reply[3]), "{who}: {reply:?}");

        for remaining in [2, 1, 0] {
            let reply = throttle(&mut p, who, b"th:a", "2 10 1");
            assert_eq!(reply[..3], [0, 3, remaining], "{who}: THROTTLE {reply:?}");
        }
        let reply = throttle(&mut p, who, b"th:a", "2 10 1 5");
        assert_eq!(reply[..2], [1, 3], "{who}: THROTTLE quantity 5 {reply:?}");

        let reply = tokenbucket(&mut p, who, b"tb:upgrade", "3 1 1000 COST 2");
        assert_eq!(reply[..3], [1, 3, 1], "{who}");
        let reply = tokenbucket(&mut p, who, b"tb:upgrade", "6 2 1000");
        assert_eq!(reply[..3], [1, 6, 3], "{who}: a new policy keeps the usage");

        let reply = tokenbucket(&mut p, who, b"bin:\xff\x00\xfe", "2 1 60000");
        assert_eq!(reply[..3], [1, 2, 1], "{who}: binary key");

        set_clock_offset(&mut p, 4_000);
        let (first, second, cell): (Vec<i64>, Vec<i64>, Vec<i64>) = redis::pipe()
            .atomic()
            .add_command(command("RL.TOKENBUCKET", b"tb:multi", "4 1 60000"))
            .add_command(command("RL.TOKENBUCKET", b"tb:multi", "4 1 60000 COST 2"))
            .add_command(command("RL.THROTTLE", b"th:multi", "1 1 60"))
            .query(&mut p)
            .unwrap_or_else(|e| panic!("{who}: MULTI: {e}"));
        assert_eq!(
            (first[2], second[2], cell[2]),
            (3, 1, 1),
            "{who}: MULTI {first:?} {second:?} {cell:?}"
        );
        let script = "local a = redis.call('RL.TOKENBUCKET', KEYS[1], 3, 1, 60000) \
                      local b = redis.call('RL.TOKENBUCKET', KEYS[1], 3, 1, 60000, 'COST', 5) \
                      local c = redis.call('RL.TOKENBUCKET', KEYS[1], 3, 1, 60000) \
                      return {a[3], b[1], c[3]}";
        let from_script: Vec<i64> = redis::cmd("EVAL")
            .arg(script)
            .arg(1)
            .arg(b"tb:script")
            .query(&mut p)
            .unwrap_or_else(|e| panic!("{who}: EVAL: {e}"));
        assert_eq!(from_script, [2, 0, 1], "{who}: script");

        let now: (u64, u64) = redis::cmd("TIME").query(&mut p).unwrap();
        let state = bucket(4, now.0 * 1_000_000 + now.1).encode();
        let () = redis::cmd("RL.SETSTATE")
            .arg(b"tb:setstate")
            .arg(&state)
            .query(&mut p)
            .unwrap();
        let deleted: i64 = redis::cmd("RL.RESET")
            .arg(b"tb:gone")
            .query(&mut p)
            .unwrap();
        assert_eq!(deleted, 1, "{who}: RL.RESET");
        let () = redis::cmd("SET")
            .arg("plain")
            .arg("v")
            .query(&mut p)
            .unwrap();

        // A minute later for the primary: pre:bucket has refilled one token.
        set_clock_offset(&mut p, 65_000);
        let reply = tokenbucket(&mut p, who, b"pre:bucket", "10 1 60000");
        assert_eq!(reply[..3], [1, 10, 7], "{who}: {reply:?}");
        let reply = throttle(&mut p, who, b"pre:cell", "4 1 60");
        assert_eq!(reply[..3], [0, 5, 4], "{who}: {reply:?}");

        let limiters = assert_replica_matches(&mut p, &mut r, who);
        assert_eq!(limiters, 10, "{who}: limiters compared");
        assert_eq!(
            stored_state(&mut r, b"tb:setstate").as_deref(),
            Some(state.as_slice()),
            "{who}"
        );

        // Another clock for the replica, more decisions on the primary: still identical.
        set_clock_offset(&mut r, 123_456_789);
        set_clock_offset(&mut p, 66_000);
        for key in [b"tb:a".as_slice(), b"tb:multi", b"tb:upgrade", b"tb:new"] {
            let _ = tokenbucket(&mut p, who, key, "6 2 1000");
        }
        let reply = throttle(&mut p, who, b"th:a", "2 10 1");
        assert_eq!(
            reply[..2],
            [0, 3],
            "{who}: a second later the throttle allows"
        );
        assert_eq!(assert_replica_matches(&mut p, &mut r, who), 11, "{who}");

        // The primary's clock moves back an hour: its decisions go on from the stored
        // moments (elapsed time is never negative), and the replica follows exactly.
        set_clock_offset(&mut p, 0);
        let reply = tokenbucket(&mut p, who, b"pre:bucket", "10 1 60000");
        assert_eq!(
            reply[..3],
            [1, 10, 6],
            "{who}: after the clock moved back {reply:?}"
        );
        let reply = tokenbucket(&mut p, who, b"tb:new", "6 2 1000 COST 2");
        assert_eq!(
            reply[..3],
            [1, 6, 3],
            "{who}: after the clock moved back {reply:?}"
        );
        assert_eq!(assert_replica_matches(&mut p, &mut r, who), 11, "{who}");

        // The replica only ever stored states: it never ran a decision.
        let replica_info = |r: &mut Connection, field: &str| {
            info_value(r, "redlimit", &format!("redlimit_{field}"))
                .unwrap_or_else(|| panic!("{who}: INFO redlimit has no {field}"))
        };
        assert_eq!(replica_info(&mut r, "tokenbucket_calls"), "0", "{who}");
        assert_eq!(replica_info(&mut r, "throttle_calls"), "0", "{who}");
        assert_eq!(replica_info(&mut r, "reset_calls"), "1", "{who}");
        let setstates: i64 = replica_info(&mut r, "setstate_calls").parse().unwrap();
        assert!(
            setstates >= 20,
            "{who}: the replica ran {setstates} RL.SETSTATE"
        );
    }
}

/// The bytes of a command in the replication stream (RESP array of bulk strings).
fn resp_len(args: &[&[u8]]) -> i64 {
    let header = format!("*{}\r\n", args.len()).len();
    let body: usize = args
        .iter()
        .map(|arg| format!("${}\r\n", arg.len()).len() + arg.len() + 2)
        .sum();
    i64::try_from(header + body).unwrap()
}

#[test]
fn denied_peek_and_cost_zero_calls_propagate_nothing() {
    for binary in servers() {
        let who = binary.name();
        // No PING to the replica during the test: it would move the offset.
        let (primary, replica) =
            primary_and_replica(&binary, &["--repl-ping-replica-period", "3600"]);
        let mut p = primary.connection();
        let mut r = replica.connection();
        let key: &[u8] = b"k";

        let () = redis::cmd("SET")
            .arg("string")
            .arg("v")
            .query(&mut p)
            .unwrap();
        let reply = tokenbucket(&mut p, who, key, "5 1 60000");
        assert_eq!(reply[..3], [1, 5, 4], "{who}");
        for _ in 0..2 {
            let _ = throttle(&mut p, who, b"cell", "1 1 60");
        }

        // An allowed call propagates exactly one RL.SETSTATE with the new state.
        let before = master_repl_offset(&mut p);
        let reply = tokenbucket(&mut p, who, key, "5 1 60000");
        assert_eq!(reply[..3], [1, 5, 3], "{who}");
        let state = stored_state(&mut p, key).unwrap();
        let allowed = master_repl_offset(&mut p);
        assert_eq!(
            allowed - before,
            resp_len(&[b"RL.SETSTATE", key, &state]),
            "{who}: an allowed call propagates one RL.SETSTATE"
        );

        let nothing_calls: [(&str, &[u8], &str, Option<i64>); 11] = [
            ("RL.TOKENBUCKET", key, "5 1 60000 COST 4", Some(0)),
            ("RL.TOKENBUCKET", key, "5 1 60000 COST 6", Some(0)),
            ("RL.TOKENBUCKET", key, "5 1 60000 PEEK", Some(1)),
            ("RL.TOKENBUCKET", key, "5 1 60000 COST 3 PEEK", Some(1)),
            ("RL.TOKENBUCKET", key, "5 1 60000 COST 0", Some(1)),
            (
                "RL.TOKENBUCKET",
                key,
                "5 1 60000 COST 4 MAXWAIT 10",
                Some(0),
            ),
            ("RL.TOKENBUCKET", b"missing", "5 1 60000 PEEK", Some(1)),
            ("RL.TOKENBUCKET", b"missing", "5 1 60000 COST 0", Some(1)),
            ("RL.THROTTLE", b"cell", "1 1 60", Some(1)),
            ("RL.TOKENBUCKET", b"string", "5 1 60000", None),
            ("RL.THROTTLE", key, "1 1 60", None),
        ];
        for (name, target, args, first) in nothing_calls {
            let reply: redis::RedisResult<Vec<i64>> = command(name, target, args).query(&mut p);
            match (first, reply) {
                (Some(expected), Ok(reply)) => assert_eq!(
                    reply[0],
                    expected,
                    "{who}: {name} {} {args}: {reply:?}",
                    show(target)
                ),
                (None, Err(error)) => assert_eq!(error.code(), Some("WRONGTYPE"), "{who}"),
                (_, other) => panic!("{who}: {name} {} {args}: {other:?}", show(target)),
            }
        }
        let syntax: redis::RedisResult<Vec<i64>> =
            command("RL.TOKENBUCKET", key, "5 1 60000 BOGUS").query(&mut p);
        assert!(syntax.is_err(), "{who}: {syntax:?}");
        assert_eq!(
            status(&mut p, key).map(|s| s.number("remaining")),
            Some(2),
            "{who}"
        );
        assert_eq!(status(&mut p, b"missing"), None, "{who}");
        let deleted: i64 = redis::cmd("RL.RESET")
            .arg(b"missing")
            .query(&mut p)
            .unwrap();
        assert_eq!(deleted, 0, "{who}");

        assert_eq!(
            master_repl_offset(&mut p),
            allowed,
            "{who}: denied, PEEK, COST 0, read-only and failed calls propagated something"
        );
        assert_eq!(stored_state(&mut p, key).as_ref(), Some(&state), "{who}");

        // And the next allowed call, then a deleting RL.RESET, do propagate.
        let reply = tokenbucket(&mut p, who, key, "5 1 60000 COST 2");
        assert_eq!(reply[..3], [1, 5, 1], "{who}");
        let state = stored_state(&mut p, key).unwrap();
        let after_allowed = master_repl_offset(&mut p);
        assert_eq!(
            after_allowed - allowed,
            resp_len(&[b"RL.SETSTATE", key, &state]),
            "{who}"
        );
        let deleted: i64 = redis::cmd("RL.RESET").arg(key).query(&mut p).unwrap();
        assert_eq!(deleted, 1, "{who}");
        assert_eq!(
            master_repl_offset(&mut p) - after_allowed,
            resp_len(&[b"RL.RESET", key]),
            "{who}: a deleting RL.RESET propagates itself"
        );
        assert_replica_matches(&mut p, &mut r, who);
        let exists: i64 = redis::cmd("EXISTS").arg(key).query(&mut r).unwrap();
        assert_eq!(exists, 0, "{who}: RL.RESET reached the replica");
    }
}

#[test]
fn status_on_the_replica_matches_the_primary_under_the_same_clock() {
    for binary in servers() {
        let who = binary.name();
        let (primary, replica) = primary_and_replica(&binary, &[]);
        let mut p = primary.connection();
        let mut r = replica.connection();
        set_clock_offset(&mut p, 5_000);
        let _ = tokenbucket(&mut p, who, b"bucket", "10 1 60000 COST 4");
        let _ = tokenbucket(&mut p, who, b"borrow", "4 2 10000 COST 4");
        let _ = tokenbucket(&mut p, who, b"borrow", "4 2 10000 COST 2 MAXWAIT 20000");
        for _ in 0..3 {
            let _ = throttle(&mut p, who, b"cell", "3 1 60");
        }
        wait_for_replica(&mut p, who);

        set_clock_offset(&mut r, 5_000);
        for key in [b"bucket".as_slice(), b"borrow", b"cell"] {
            let read_at = Instant::now();
            let on_primary = status(&mut p, key).unwrap();
            let on_replica = status(&mut r, key)
                .unwrap_or_else(|| panic!("{who}: RL.STATUS {} nil on the replica", show(key)));
            if let Err(diff) = on_primary.matches_later(&on_replica, read_at.elapsed()) {
                panic!("{who}: RL.STATUS {} primary vs replica: {diff}", show(key));
            }
        }
        assert_eq!(status(&mut r, b"missing"), None, "{who}");
        let report = status(&mut r, b"bucket").unwrap();
        assert_eq!(
            (report.number("remaining"), report.number("allowed")),
            (5, 1),
            "{who}: {report:?}"
        );

        // The replica's own clock only changes how the same state reads.
        set_clock_offset(&mut r, 5_000 + 3_600_000);
        let report = status(&mut r, b"bucket").unwrap();
        assert_eq!(
            report.number("remaining"),
            9,
            "{who}: an hour later: {report:?}"
        );

        // Writes are refused on a read-only replica.
        for cmd in [
            command("RL.TOKENBUCKET", b"bucket", "10 1 60000"),
            command("RL.THROTTLE", b"cell", "3 1 60"),
            command("RL.RESET", b"bucket", ""),
        ] {
            let reply: redis::RedisResult<redis::Value> = cmd.query(&mut r);
            let error = reply.expect_err("a write on a replica");
            assert_eq!(error.code(), Some("READONLY"), "{who}: {error}");
        }
        assert_replica_matches(&mut p, &mut r, who);
    }
}

#[test]
fn a_key_expiring_on_the_primary_is_deleted_on_the_replica() {
    const DB: i64 = 9;
    const EXPIRY_WAIT: Duration = Duration::from_secs(3);
    for binary in servers() {
        let who = binary.name();
        let (primary, replica) = primary_and_replica(&binary, &[]);
        let mut p = primary.connection();
        let mut r = replica.connection();
        for con in [&mut p, &mut r] {
            let () = redis::cmd("SELECT").arg(DB).query(con).unwrap();
        }
        // With the primary's clock at offset 0, the key expires when it refills: 50 ms.
        let reply = tokenbucket(&mut p, who, b"short", "1 1 50");
        assert_eq!(reply, [1, 1, 0, 0, 50], "{who}");
        let expired_before: i64 = info_value(&mut p, "stats", "expired_keys")
            .and_then(|v| v.parse().ok())
            .unwrap();
        wait_for_replica(&mut p, who);

        // DBSIZE counts keys the replica still holds, expired or not: a replica never
        // deletes by itself, it waits for the primary's DEL.
        let deadline = Instant::now() + EXPIRY_WAIT;
        loop {
            let held: i64 = redis::cmd("DBSIZE").query(&mut r).unwrap();
            if held == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{who}: the replica still holds the key {EXPIRY_WAIT:?} after it idled"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let held: i64 = redis::cmd("DBSIZE").query(&mut p).unwrap();
        assert_eq!(held, 0, "{who}: the primary still holds the key");
        let expired_after: i64 = info_value(&mut p, "stats", "expired_keys")
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert_eq!(
            expired_after - expired_before,
            1,
            "{who}: the primary expired it"
        );
    }
}

/// What other clients see of a call that writes nothing. Like a replica, a client that
/// `WATCH`es a limiter key must not see a write when a request was denied, peeked or of
/// cost 0: its transaction must still commit.
#[test]
fn calls_that_write_nothing_do_not_abort_a_transaction_watching_the_key() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let mut watcher = server.connection();
        let mut caller = server.connection();
        let reply = tokenbucket(&mut caller, who, b"bucket", "1 1 60000");
        assert_eq!(reply[..3], [1, 1, 0], "{who}");
        let reply = throttle(&mut caller, who, b"cell", "0 1 60");
        assert_eq!(reply[..3], [0, 1, 0], "{who}");

        // (command, key, args, first field of the reply; -1: not a decision)
        let calls: [(&str, &[u8], &str, i64); 7] = [
            ("RL.TOKENBUCKET", b"bucket", "1 1 60000 PEEK", 0),
            ("RL.TOKENBUCKET", b"bucket", "1 1 60000 COST 0", 1),
            ("RL.TOKENBUCKET", b"bucket", "1 1 60000", 0),
            (
                "RL.TOKENBUCKET",
                b"bucket",
                "1 1 60000 COST 1 MAXWAIT 10",
                0,
            ),
            ("RL.THROTTLE", b"cell", "0 1 60", 1),
            ("RL.STATUS", b"bucket", "", -1),
            ("RL.RESET", b"missing", "", -1),
        ];
        let mut aborted_by = Vec::new();
        for (name, key, args, first) in calls {
            let () = redis::cmd("WATCH").arg(key).query(&mut watcher).unwrap();
            let reply: redis::Value = command(name, key, args)
                .query(&mut caller)
                .unwrap_or_else(|e| panic!("{who}: {name} {args}: {e}"));
            if first >= 0 {
                let reply: Vec<i64> = redis::from_redis_value(&reply).unwrap();
                assert_eq!(reply[0], first, "{who}: {name} {args}: {reply:?}");
            }
            let committed: Option<(String,)> = redis::pipe()
                .atomic()
                .cmd("PING")
                .query(&mut watcher)
                .unwrap();
            if committed.is_none() {
                aborted_by.push(format!("{name} {} {args}", show(key)));
            }
        }
        assert!(
            aborted_by.is_empty(),
            "{who}: these calls change nothing, yet abort a transaction that WATCHes \
             their key: {aborted_by:?}"
        );
    }
}
