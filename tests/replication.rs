//! A replica holds exactly the primary's limiter state, whatever its own clock says:
//! the primary replicates resulting states (`RL.SETSTATE`), never a time-dependent
//! command, and replicates nothing at all for denied, PEEK and COST 0 calls. Expiry
//! happens on the primary and reaches the replica as a deletion. Other clients, too,
//! must see no write from a call that changes nothing (`WATCH`). This holds for every
//! kind of limiter: token buckets, throttles, exact sliding logs, APPROX counters, fixed
//! windows, the several keys one `RL.ALL` writes (in one transaction), and leases, whose
//! release propagates the leases left, or a `DEL` when none is.
//!
//! Every test runs against every server found by `available_servers()`; build the module
//! first (`cargo build -p redlimit-module`). Time moves with the module's clock offset,
//! never with sleeps; the only waits are bounded polls for an event (sync, expiry).

#[path = "live/calls.rs"]
mod calls;
#[path = "replication/propagation.rs"]
mod propagation;

use calls::{
    acquire, assert_expiry_follows_state, command, fixed, release, servers, show, sliding, stored,
    throttle, tokenbucket, with_module,
};

use redlimit_test_support::{snapshot, stored_state};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Connection, Value};
use redlimit_core::{BucketState, Limiter, Timestamp, TokenBucket};
use redlimit_test_support::{Flavor, Server, ServerBinary, info_value, set_clock_offset, status};

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

/// A command written out, split on spaces: `"RL.ALL 2 a b SLIDING 3 60000 FIXED 5 1000"`.
fn line(line: &str) -> redis::Cmd {
    let mut words = line.split_whitespace();
    let mut cmd = redis::cmd(words.next().unwrap_or_default());
    for word in words {
        cmd.arg(word);
    }
    cmd
}

/// `RL.ALL <args>`: the overall `allowed` and each key's `remaining`.
fn all_of(con: &mut Connection, who: &str, args: &str) -> (i64, Vec<i64>) {
    let reply: Vec<Value> = line(&format!("RL.ALL {args}"))
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: RL.ALL {args}: {e}"));
    let allowed = redis::from_redis_value(&reply[0]).unwrap();
    let remaining = reply[1..]
        .iter()
        .map(|decision| redis::from_redis_value::<Vec<i64>>(decision).unwrap()[2])
        .collect();
    (allowed, remaining)
}

/// The first field of a reply: a decision's `allowed`, the overall `allowed` of
/// `RL.ALL`, or an integer reply (`RL.RELEASE`).
fn first_field(reply: &Value) -> i64 {
    match reply {
        Value::Int(n) => *n,
        Value::Array(items) if !items.is_empty() => first_field(&items[0]),
        other => panic!("not a decision: {other:?}"),
    }
}

const DAY_MS: u64 = 86_400_000;

/// A test's module clock: offsets counted from a base that puts "now" one hour into a
/// UTC day. Fixed and APPROX windows are aligned to the epoch, so no day-long window
/// ends while a test runs, whatever the time of day it runs at.
#[derive(Debug, Clone, Copy)]
struct Clock {
    base: u64,
}

impl Clock {
    /// The base for a test starting now on this server.
    fn aligned(con: &mut Connection) -> Clock {
        let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(con).unwrap();
        let now_ms = seconds * 1_000 + micros / 1_000;
        Clock {
            base: DAY_MS - now_ms % DAY_MS + 3_600_000,
        }
    }

    /// Moves the server's clock to `offset_ms` after the base.
    fn set(self, con: &mut Connection, offset_ms: u64) {
        set_clock_offset(con, self.base + offset_ms);
    }
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
        let clock = Clock::aligned(&mut p);
        clock.set(&mut p, 1_000);
        let reply = tokenbucket(&mut p, who, b"pre:bucket", "10 1 60000 COST 3");
        assert_eq!(reply[..3], [1, 10, 7], "{who}");
        let reply = throttle(&mut p, who, b"pre:cell", "4 1 60");
        assert_eq!(reply[..3], [0, 5, 4], "{who}");
        let reply = tokenbucket(&mut p, who, b"tb:gone", "3 1 1000");
        assert_eq!(reply[..3], [1, 3, 2], "{who}");
        for (cost, remaining) in [(1, 9), (3, 6), (2, 4)] {
            let reply = sliding(&mut p, who, b"pre:log", &format!("10 60000 COST {cost}"));
            assert_eq!(reply[..3], [1, 10, remaining], "{who}: {reply:?}");
        }
        let reply = acquire(&mut p, who, b"pre:lease", "2 60000", b"\x00pre\xff");
        assert_eq!(reply[..3], [1, 2, 1], "{who}");

        let replica = with_module(&binary)
            .module_args(["clock-offset-ms", "7200000"])
            .replica_of(&primary)
            .start();
        replica.wait_for_sync();
        let mut r = replica.connection();
        assert_eq!(assert_replica_matches(&mut p, &mut r, who), 5, "{who}");

        // The timeline, on the primary, while its clock moves.
        for remaining in [4, 3, 2] {
            let reply = tokenbucket(&mut p, who, b"tb:a", "5 1 1000");
            assert_eq!(reply[..4], [1, 5, remaining, 0], "{who}: {reply:?}");
        }
        // An exact sliding log: four requests in one transaction (one millisecond where
        // the server freezes time for it), costs up to 3.
        let replies: Vec<Vec<i64>> = redis::pipe()
            .atomic()
            .add_command(command("RL.SLIDING", b"sl:a", "20 60000"))
            .add_command(command("RL.SLIDING", b"sl:a", "20 60000"))
            .add_command(command("RL.SLIDING", b"sl:a", "20 60000"))
            .add_command(command("RL.SLIDING", b"sl:a", "20 60000 COST 3"))
            .query(&mut p)
            .unwrap_or_else(|e| panic!("{who}: MULTI RL.SLIDING: {e}"));
        let remaining: Vec<i64> = replies.iter().map(|reply| reply[2]).collect();
        assert_eq!(remaining, [19, 18, 17, 14], "{who}: {replies:?}");
        let Limiter::Sliding(_, log) = stored(&mut p, b"sl:a") else {
            panic!("{who}: sl:a holds another limiter");
        };
        let times: Vec<u64> = log.iter().map(|(at, _)| at).collect();
        if binary.flavor != Flavor::Redis70 {
            assert!(
                times.iter().all(|&at| at == times[0]),
                "{who}: time is frozen for a transaction: {times:?}"
            );
        }

        clock.set(&mut p, 1_500);
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

        for (cost, remaining) in [(2, 12), (1, 11), (2, 9)] {
            let reply = sliding(&mut p, who, b"sl:a", &format!("20 60000 COST {cost}"));
            assert_eq!(reply[..4], [1, 20, remaining, 0], "{who}: {reply:?}");
        }
        let reply = sliding(&mut p, who, b"sl:a", "20 60000 COST 10");
        assert_eq!(reply[..3], [0, 20, 9], "{who}: denied {reply:?}");
        let reply = sliding(&mut p, who, b"sl:a", "20 60000 PEEK");
        assert_eq!(reply[..4], [1, 20, 8, 0], "{who}: PEEK {reply:?}");
        let reply = sliding(&mut p, who, b"sl:approx", "100 86400000 APPROX COST 10");
        assert_eq!(reply[..4], [1, 100, 90, 0], "{who}: APPROX {reply:?}");
        let reply = fixed(&mut p, who, b"fx:a", "3 86400000 COST 2");
        assert_eq!(reply[..4], [1, 3, 1, 0], "{who}: RL.FIXED {reply:?}");
        let reply = fixed(&mut p, who, b"fx:a", "3 86400000 COST 2");
        assert_eq!(reply[..3], [0, 3, 1], "{who}: RL.FIXED denied {reply:?}");

        // RL.ALL writes three keys at once, or none.
        let all = "3 {u}:a {u}:b {u}:c SLIDING 5 60000 FIXED 4 86400000 TOKENBUCKET 3 1 60000";
        let reply = all_of(&mut p, who, &format!("{all} COST 2"));
        assert_eq!(reply, (1, vec![3, 2, 1]), "{who}: RL.ALL");
        let reply = all_of(&mut p, who, &format!("{all} COST 2"));
        assert_eq!(reply, (0, vec![1, 0, 1]), "{who}: the bucket refuses");

        // Leases with binary ids; one short, one refused, and a key whose last lease is
        // released (deleted on the replica too).
        let reply = acquire(&mut p, who, b"lease:a", "2 60000", b"\x00a\xff");
        assert_eq!(reply[..4], [1, 2, 1, 0], "{who}: RL.ACQUIRE");
        // A lease ends `lease_ms` after now rounded up to the millisecond.
        assert!(
            (60_000..=60_001).contains(&reply[4]),
            "{who}: RL.ACQUIRE {reply:?}"
        );
        let reply = acquire(&mut p, who, b"lease:a", "2 1000", b"\r\nb");
        assert_eq!(reply[..4], [1, 2, 0, 0], "{who}: RL.ACQUIRE {reply:?}");
        let reply = acquire(&mut p, who, b"lease:a", "2 60000", b"c");
        assert_eq!(reply[..3], [0, 2, 0], "{who}: a third holder {reply:?}");
        let reply = acquire(&mut p, who, b"lease:last", "1 60000", b"\xffx");
        assert_eq!(reply[..3], [1, 1, 0], "{who}: RL.ACQUIRE");
        assert_eq!(release(&mut p, who, b"lease:last", b"\xffx"), 1, "{who}");

        let reply = tokenbucket(&mut p, who, b"tb:upgrade", "3 1 1000 COST 2");
        assert_eq!(reply[..3], [1, 3, 1], "{who}");
        let reply = tokenbucket(&mut p, who, b"tb:upgrade", "6 2 1000");
        assert_eq!(reply[..3], [1, 6, 3], "{who}: a new policy keeps the usage");

        let reply = tokenbucket(&mut p, who, b"bin:\xff\x00\xfe", "2 1 60000");
        assert_eq!(reply[..3], [1, 2, 1], "{who}: binary key");

        clock.set(&mut p, 4_000);
        let mut acquire_in_multi = command("RL.ACQUIRE", b"lease:multi", "2 60000");
        acquire_in_multi.arg(b"\xfe\x00");
        let replies: Vec<Vec<i64>> = redis::pipe()
            .atomic()
            .add_command(command("RL.TOKENBUCKET", b"tb:multi", "4 1 60000"))
            .add_command(command("RL.TOKENBUCKET", b"tb:multi", "4 1 60000 COST 2"))
            .add_command(command("RL.THROTTLE", b"th:multi", "1 1 60"))
            .add_command(command("RL.SLIDING", b"sl:multi", "3 60000 COST 2"))
            .add_command(acquire_in_multi)
            .query(&mut p)
            .unwrap_or_else(|e| panic!("{who}: MULTI: {e}"));
        let remaining: Vec<i64> = replies.iter().map(|reply| reply[2]).collect();
        assert_eq!(remaining, [3, 1, 1, 1, 1], "{who}: MULTI {replies:?}");
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
        let script = "local a = redis.call('RL.SLIDING', KEYS[1], 3, 60000, 'COST', 2) \
                      local b = redis.call('RL.SLIDING', KEYS[1], 3, 60000, 'COST', 2) \
                      local c = redis.call('RL.ACQUIRE', KEYS[2], 1, 60000, ARGV[1]) \
                      local d = redis.call('RL.RELEASE', KEYS[2], ARGV[1]) \
                      return {a[3], b[1], c[1], d}";
        let from_script: Vec<i64> = redis::cmd("EVAL")
            .arg(script)
            .arg(2)
            .arg(b"sl:script")
            .arg(b"lease:script")
            .arg(b"\x00script\xff")
            .query(&mut p)
            .unwrap_or_else(|e| panic!("{who}: EVAL: {e}"));
        assert_eq!(from_script, [1, 0, 1, 1], "{who}: script");

        // The short lease has ended: releasing a lease nobody holds drops it, a write.
        assert_eq!(release(&mut p, who, b"lease:a", b"nobody"), 0, "{who}");
        let Limiter::Concurrency(_, leases) = stored(&mut p, b"lease:a") else {
            panic!("{who}: lease:a holds another limiter");
        };
        assert_eq!(leases.held().len(), 1, "{who}: {leases:?}");

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
        // Idle by now (its bucket refilled): deleted everywhere, not counted, like an
        // absent key.
        assert_eq!(deleted, 0, "{who}: RL.RESET");
        let () = redis::cmd("SET")
            .arg("plain")
            .arg("v")
            .query(&mut p)
            .unwrap();

        // A minute later for the primary: pre:bucket has refilled one token, the logs
        // are empty again, every lease has ended.
        clock.set(&mut p, 65_000);
        let reply = tokenbucket(&mut p, who, b"pre:bucket", "10 1 60000");
        assert_eq!(reply[..3], [1, 10, 7], "{who}: {reply:?}");
        let reply = throttle(&mut p, who, b"pre:cell", "4 1 60");
        assert_eq!(reply[..3], [0, 5, 4], "{who}: {reply:?}");
        let reply = sliding(&mut p, who, b"pre:log", "10 60000");
        assert_eq!(reply, [1, 10, 9, 0, 60_000], "{who}: {reply:?}");
        let reply = sliding(&mut p, who, b"sl:a", "20 60000");
        assert_eq!(reply, [1, 20, 19, 0, 60_000], "{who}: {reply:?}");
        let reply = acquire(&mut p, who, b"pre:lease", "2 60000", b"new");
        assert_eq!(reply[..4], [1, 2, 1, 0], "{who}: {reply:?}");
        assert!((60_000..=60_001).contains(&reply[4]), "{who}: {reply:?}");
        let reply = fixed(&mut p, who, b"fx:a", "3 86400000");
        assert_eq!(
            reply[..3],
            [1, 3, 0],
            "{who}: the same day's window {reply:?}"
        );
        // Released after it ended: not held, and no lease is left: the key goes.
        assert_eq!(release(&mut p, who, b"lease:a", b"\x00a\xff"), 0, "{who}");
        let exists: i64 = redis::cmd("EXISTS").arg(b"lease:a").query(&mut p).unwrap();
        assert_eq!(
            exists, 0,
            "{who}: a lease key without a live lease is deleted"
        );

        let limiters = assert_replica_matches(&mut p, &mut r, who);
        assert_eq!(limiters, 21, "{who}: limiters compared");
        assert_eq!(
            stored_state(&mut r, b"tb:setstate").as_deref(),
            Some(state.as_slice()),
            "{who}"
        );

        // Another clock for the replica, more decisions on the primary: still identical.
        set_clock_offset(&mut r, 123_456_789);
        clock.set(&mut p, 66_000);
        for key in [b"tb:a".as_slice(), b"tb:multi", b"tb:upgrade", b"tb:new"] {
            let _ = tokenbucket(&mut p, who, key, "6 2 1000");
        }
        let reply = throttle(&mut p, who, b"th:a", "2 10 1");
        assert_eq!(
            reply[..2],
            [0, 3],
            "{who}: a second later the throttle allows"
        );
        let reply = sliding(&mut p, who, b"sl:a", "20 60000 COST 5");
        assert_eq!(reply[..3], [1, 20, 14], "{who}: {reply:?}");
        let reply = all_of(&mut p, who, &format!("{all} COST 1"));
        assert_eq!(reply, (1, vec![4, 1, 1]), "{who}: RL.ALL a minute later");
        let reply = acquire(&mut p, who, b"lease:multi", "2 60000", b"\xfe\x00");
        assert_eq!(reply[..3], [1, 2, 1], "{who}: its lease ended: taken anew");
        assert_eq!(assert_replica_matches(&mut p, &mut r, who), 22, "{who}");

        // The primary's clock moves back a minute: its decisions go on from the stored
        // moments (elapsed time is never negative, a log records at its newest entry's
        // time; a token bucket reads its line extrapolated back to the clock, the refill
        // until its stored moment missing too: fewer tokens, never more), and the
        // replica follows exactly.
        clock.set(&mut p, 0);
        // Between 2 and 3 tokens missing at 65 s (the wall clock runs between the calls),
        // 1.08 more at 0 s, and 1 taken: 4 or 5 left (6 before, refill frozen).
        let reply = tokenbucket(&mut p, who, b"pre:bucket", "10 1 60000");
        assert!(
            reply[..2] == [1, 10] && (4..=5).contains(&reply[2]),
            "{who}: after the clock moved back, a minute of refill less {reply:?}"
        );
        // Two tokens a second, 66 s back: empty until the clock catches up.
        let reply = tokenbucket(&mut p, who, b"tb:new", "6 2 1000 COST 2");
        assert_eq!(
            reply[..3],
            [0, 6, 0],
            "{who}: after the clock moved back {reply:?}"
        );
        let reply = sliding(&mut p, who, b"sl:a", "20 60000");
        assert_eq!(reply[..3], [1, 20, 13], "{who}: {reply:?}");
        let Limiter::Sliding(_, log) = stored(&mut p, b"sl:a") else {
            panic!("{who}: sl:a holds another limiter");
        };
        let times: Vec<u64> = log.iter().map(|(at, _)| at).collect();
        assert!(
            times.len() == 3 && times[1] == times[2],
            "{who}: the entry is recorded at the newest entry's time: {times:?}"
        );
        assert_eq!(assert_replica_matches(&mut p, &mut r, who), 22, "{who}");

        // The replica only ever stored states: it never ran a decision.
        let replica_info = |r: &mut Connection, field: &str| {
            info_value(r, "redlimit", &format!("redlimit_{field}"))
                .unwrap_or_else(|| panic!("{who}: INFO redlimit has no {field}"))
        };
        for command in [
            "tokenbucket",
            "throttle",
            "sliding",
            "fixed",
            "all",
            "acquire",
            "release",
        ] {
            let calls = replica_info(&mut r, &format!("{command}_calls"));
            assert_eq!(calls, "0", "{who}: the replica ran {command}");
        }
        assert_eq!(replica_info(&mut r, "reset_calls"), "1", "{who}");
        let setstates: i64 = replica_info(&mut r, "setstate_calls").parse().unwrap();
        assert!(
            setstates >= 50,
            "{who}: the replica ran {setstates} RL.SETSTATE"
        );
    }
}

#[test]
fn status_on_the_replica_matches_the_primary_under_the_same_clock() {
    for binary in servers() {
        let who = binary.name();
        let (primary, replica) = primary_and_replica(&binary, &[]);
        let mut p = primary.connection();
        let mut r = replica.connection();
        let clock = Clock::aligned(&mut p);
        clock.set(&mut p, 5_000);
        let _ = tokenbucket(&mut p, who, b"bucket", "10 1 60000 COST 4");
        let _ = tokenbucket(&mut p, who, b"borrow", "4 2 10000 COST 4");
        let _ = tokenbucket(&mut p, who, b"borrow", "4 2 10000 COST 2 MAXWAIT 20000");
        for _ in 0..3 {
            let _ = throttle(&mut p, who, b"cell", "3 1 60");
        }
        for cost in [4, 3] {
            let _ = sliding(&mut p, who, b"log", &format!("10 60000 COST {cost}"));
        }
        let _ = sliding(&mut p, who, b"approx", "100 86400000 APPROX COST 30");
        let _ = fixed(&mut p, who, b"fixed", "5 86400000 COST 2");
        let reply = all_of(
            &mut p,
            who,
            "2 {s}:a {s}:b SLIDING 4 60000 FIXED 6 86400000 COST 2",
        );
        assert_eq!(reply, (1, vec![2, 4]), "{who}");
        for id in [b"\x00one".as_slice(), b"\xfftwo"] {
            let _ = acquire(&mut p, who, b"leases", "3 60000", id);
        }
        wait_for_replica(&mut p, who);

        let keys: [&[u8]; 9] = [
            b"bucket", b"borrow", b"cell", b"log", b"approx", b"fixed", b"{s}:a", b"{s}:b",
            b"leases",
        ];
        clock.set(&mut r, 5_000);
        for key in keys {
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

        // The replica's own clock only changes how the same state reads: an hour later
        // the bucket has refilled, the logs are empty, the leases have ended, and the
        // day's windows still count.
        clock.set(&mut r, 5_000 + 3_600_000);
        let expected: [(&[u8], i64); 8] = [
            (b"bucket", 9),
            (b"log", 9),
            (b"{s}:a", 3),
            (b"leases", 2),
            (b"fixed", 2),
            (b"{s}:b", 3),
            (b"approx", 69),
            (b"cell", 3),
        ];
        for (key, remaining) in expected {
            // A limiter back to full is idle: an absent key, RL.STATUS nil (the replica
            // keeps the key until the primary's DEL).
            let Some(report) = status(&mut r, key) else {
                let exists: i64 = redis::cmd("EXISTS").arg(key).query(&mut r).unwrap();
                assert_eq!(exists, 1, "{who}: {} an hour later", show(key));
                continue;
            };
            assert_eq!(
                report.number("remaining"),
                remaining,
                "{who}: {} an hour later: {report:?}",
                show(key)
            );
        }

        // Writes are refused on a read-only replica.
        for call in [
            "RL.TOKENBUCKET bucket 10 1 60000",
            "RL.THROTTLE cell 3 1 60",
            "RL.SLIDING log 10 60000",
            "RL.SLIDING approx 100 86400000 APPROX",
            "RL.FIXED fixed 5 86400000",
            "RL.ALL 2 {s}:a {s}:b SLIDING 4 60000 FIXED 6 86400000",
            "RL.ACQUIRE leases 3 60000 x",
            "RL.RELEASE leases x",
            "RL.RESET bucket",
        ] {
            let reply: redis::RedisResult<Value> = line(call).query(&mut r);
            let error = reply.expect_err("a write on a replica");
            assert_eq!(error.code(), Some("READONLY"), "{who}: {call}: {error}");
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
        // With the primary's clock at offset 0, each key expires when its limiter is back
        // to full: within 50 ms (100 ms for APPROX, whose count weighs for two windows).
        // One transaction creates them and reads the expiry count: none expires between.
        let calls: [(&str, std::ops::RangeInclusive<i64>); 6] = [
            ("RL.TOKENBUCKET short 1 1 50", 50..=50),
            ("RL.SLIDING log 1 50", 50..=50),
            ("RL.SLIDING approx 1 50 APPROX", 51..=100),
            ("RL.FIXED fixed 1 50", 1..=50),
            ("RL.ACQUIRE lease 1 50 \x00holder", 50..=51),
            ("RL.ALL 2 {e}:a {e}:b SLIDING 1 50 FIXED 1 50", 0..=0),
        ];
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (call, _) in &calls {
            pipe.add_command(line(call));
        }
        pipe.cmd("INFO").arg("stats");
        let mut replies: Vec<Value> = pipe
            .query(&mut p)
            .unwrap_or_else(|e| panic!("{who}: MULTI: {e}"));
        let stats: String = redis::from_redis_value(&replies.pop().unwrap()).unwrap();
        for ((call, reset_after), reply) in calls.iter().zip(&replies) {
            assert_eq!(first_field(reply), 1, "{who}: {call}: {reply:?}");
            if let Ok(decision) = redis::from_redis_value::<Vec<i64>>(reply) {
                assert_eq!(decision[..4], [1, 1, 0, 0], "{who}: {call}: {decision:?}");
                assert!(
                    reset_after.contains(&decision[4]),
                    "{who}: {call}: {decision:?}"
                );
            }
        }
        let expired_before: i64 = stats
            .lines()
            .find_map(|line| line.strip_prefix("expired_keys:"))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{who}: no expired_keys in {stats}"));
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
                "{who}: the replica still holds {held} keys {EXPIRY_WAIT:?} after they idled"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let held: i64 = redis::cmd("DBSIZE").query(&mut p).unwrap();
        assert_eq!(held, 0, "{who}: the primary still holds keys");
        let expired_after: i64 = info_value(&mut p, "stats", "expired_keys")
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert_eq!(
            expired_after - expired_before,
            7,
            "{who}: the primary expired every key"
        );
    }
}
