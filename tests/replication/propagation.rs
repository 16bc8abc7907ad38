//! What the primary propagates, and what it does not: one `RL.SETSTATE` per key a call
//! changes (several in one transaction for `RL.ALL`), `DEL` when the last lease goes, and
//! nothing at all for denied, PEEK, COST 0, read-only and failed calls, which other
//! clients do not see as writes either (`WATCH`).

use redis::{Connection, Value};
use redlimit_core::Limiter;
use redlimit_test_support::status;

use super::{
    Clock, acquire, all_of, assert_replica_matches, first_field, fixed, line, master_repl_offset,
    primary_and_replica, release, servers, sliding, stored_state, throttle, tokenbucket,
    with_module,
};

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
        let clock = Clock::aligned(&mut p);
        clock.set(&mut p, 0);
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
        // Limiters of every other kind, each with nothing left.
        let reply = sliding(&mut p, who, b"log", "3 60000 COST 3");
        assert_eq!(reply[..3], [1, 3, 0], "{who}");
        let reply = sliding(&mut p, who, b"approx", "4 86400000 APPROX COST 4");
        assert_eq!(reply[..3], [1, 4, 0], "{who}");
        let reply = fixed(&mut p, who, b"fixed", "2 86400000 COST 2");
        assert_eq!(reply[..3], [1, 2, 0], "{who}");
        let reply = all_of(
            &mut p,
            who,
            "2 {t}:log {t}:day SLIDING 3 60000 FIXED 5 86400000 COST 3",
        );
        assert_eq!(reply, (1, vec![0, 2]), "{who}");
        for (id, remaining) in [(b"\x00a".as_slice(), 1), (b"\xffb", 0)] {
            let reply = acquire(&mut p, who, b"leases", "2 60000", id);
            assert_eq!(reply[..3], [1, 2, remaining], "{who}");
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

        // (command, first field of the reply: `allowed`, or RL.RELEASE's 0; or the error code)
        let nothing_calls: [(&str, Result<i64, &str>); 44] = [
            ("RL.TOKENBUCKET k 5 1 60000 COST 4", Ok(0)),
            ("RL.TOKENBUCKET k 5 1 60000 COST 6", Ok(0)),
            ("RL.TOKENBUCKET k 5 1 60000 PEEK", Ok(1)),
            ("RL.TOKENBUCKET k 5 1 60000 COST 3 PEEK", Ok(1)),
            ("RL.TOKENBUCKET k 5 1 60000 COST 0", Ok(1)),
            ("RL.TOKENBUCKET k 5 1 60000 COST 4 MAXWAIT 10", Ok(0)),
            ("RL.TOKENBUCKET missing 5 1 60000 PEEK", Ok(1)),
            ("RL.TOKENBUCKET missing 5 1 60000 COST 0", Ok(1)),
            ("RL.THROTTLE cell 1 1 60", Ok(1)),
            ("RL.TOKENBUCKET string 5 1 60000", Err("WRONGTYPE")),
            ("RL.THROTTLE k 1 1 60", Err("WRONGTYPE")),
            ("RL.SLIDING log 3 60000", Ok(0)),
            ("RL.SLIDING log 3 60000 COST 4", Ok(0)),
            ("RL.SLIDING log 3 60000 PEEK", Ok(0)),
            ("RL.SLIDING log 3 60000 COST 0", Ok(1)),
            ("RL.SLIDING log 10 60000 PEEK", Ok(1)),
            ("RL.SLIDING approx 4 86400000 APPROX", Ok(0)),
            ("RL.SLIDING approx 8 86400000 APPROX COST 2 PEEK", Ok(1)),
            ("RL.SLIDING approx 4 86400000 APPROX COST 0", Ok(1)),
            ("RL.SLIDING missing 3 60000 PEEK", Ok(1)),
            ("RL.SLIDING missing 3 60000 APPROX COST 0", Ok(1)),
            ("RL.FIXED fixed 2 86400000", Ok(0)),
            ("RL.FIXED fixed 2 86400000 COST 3", Ok(0)),
            ("RL.FIXED fixed 5 86400000 PEEK", Ok(1)),
            ("RL.FIXED missing 2 86400000 COST 0", Ok(1)),
            (
                "RL.ALL 2 {t}:log {t}:day SLIDING 3 60000 FIXED 5 86400000",
                Ok(0),
            ),
            (
                "RL.ALL 2 {t}:day {t}:log FIXED 5 86400000 SLIDING 3 60000",
                Ok(0),
            ),
            (
                "RL.ALL 2 {t}:day {t}:new FIXED 5 86400000 SLIDING 3 60000 COST 3",
                Ok(0),
            ),
            (
                "RL.ALL 2 {t}:day {t}:new FIXED 5 86400000 SLIDING 3 60000 PEEK",
                Ok(1),
            ),
            (
                "RL.ALL 2 {t}:day {t}:new FIXED 5 86400000 SLIDING 3 60000 COST 0",
                Ok(1),
            ),
            (
                "RL.ALL 2 {t}:day {t}:log FIXED 5 86400000 FIXED 5 86400000",
                Err("WRONGTYPE"),
            ),
            (
                "RL.ALL 2 {t}:day string FIXED 5 86400000 FIXED 5 86400000",
                Err("WRONGTYPE"),
            ),
            (
                "RL.ALL 2 {t}:day {t}:new FIXED 5 86400000 BOGUS 3 60000",
                Err("ERR"),
            ),
            ("RL.ACQUIRE leases 2 60000 c", Ok(0)),
            ("RL.ACQUIRE leases 1 60000 c", Ok(0)),
            ("RL.RELEASE leases c", Ok(0)),
            ("RL.RELEASE missing c", Ok(0)),
            ("RL.SLIDING k 3 60000", Err("WRONGTYPE")),
            ("RL.SLIDING log 3 60000 APPROX", Err("WRONGTYPE")),
            ("RL.FIXED approx 4 86400000", Err("WRONGTYPE")),
            ("RL.ACQUIRE log 2 60000 a", Err("WRONGTYPE")),
            ("RL.RELEASE fixed a", Err("WRONGTYPE")),
            ("RL.ACQUIRE string 2 60000 a", Err("WRONGTYPE")),
            ("RL.TOKENBUCKET k 5 1 60000 BOGUS", Err("ERR")),
        ];
        for (call, expected) in nothing_calls {
            let reply: redis::RedisResult<Value> = line(call).query(&mut p);
            match (expected, reply) {
                (Ok(first), Ok(reply)) => {
                    assert_eq!(first_field(&reply), first, "{who}: {call}: {reply:?}");
                }
                (Err(code), Err(error)) => {
                    assert_eq!(error.code(), Some(code), "{who}: {call}: {error}");
                }
                (_, other) => panic!("{who}: {call}: {other:?}"),
            }
        }
        assert_eq!(
            status(&mut p, key).map(|s| s.number("remaining")),
            Some(2),
            "{who}"
        );
        assert_eq!(status(&mut p, b"missing"), None, "{who}");
        assert_eq!(status(&mut p, b"{t}:new"), None, "{who}");
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

        assert_writes_of_all_and_leases_propagate_states(&mut p, who, clock);
        assert_replica_matches(&mut p, &mut r, who);
        let exists: i64 = redis::cmd("EXISTS").arg(key).query(&mut r).unwrap();
        assert_eq!(exists, 0, "{who}: RL.RESET reached the replica");
        let exists: i64 = redis::cmd("EXISTS").arg(LEASE_KEY).query(&mut r).unwrap();
        assert_eq!(
            exists, 0,
            "{who}: the DEL of the last lease reached the replica"
        );
    }
}

/// A lease key with a binary name, emptied by [`assert_writes_of_all_and_leases_propagate_states`].
const LEASE_KEY: &[u8] = b"lease:\xff";

/// What `RL.ALL`, `RL.ACQUIRE` and `RL.RELEASE` propagate when they write: every key's
/// new state (several in one transaction), or `DEL` when the last lease goes.
fn assert_writes_of_all_and_leases_propagate_states(p: &mut Connection, who: &str, clock: Clock) {
    let mut offset = master_repl_offset(p);
    let mut assert_propagated = |p: &mut Connection, what: &str, commands: &[&[&[u8]]]| {
        let now = master_repl_offset(p);
        let expected: i64 = commands.iter().map(|args| resp_len(args)).sum();
        assert_eq!(now - offset, expected, "{who}: {what}");
        offset = now;
    };

    let reply = all_of(
        p,
        who,
        "2 {t}:day {t}:new FIXED 5 86400000 SLIDING 3 60000 COST 2",
    );
    assert_eq!(reply, (1, vec![0, 1]), "{who}: RL.ALL");
    let (day, new) = (
        stored_state(p, b"{t}:day").unwrap(),
        stored_state(p, b"{t}:new").unwrap(),
    );
    assert_propagated(
        p,
        "an allowed RL.ALL propagates every key's state, in a transaction",
        &[
            &[b"MULTI"],
            &[b"RL.SETSTATE", b"{t}:day", &day],
            &[b"RL.SETSTATE", b"{t}:new", &new],
            &[b"EXEC"],
        ],
    );

    // A key named twice is one key: one state.
    let reply = all_of(
        p,
        who,
        "2 {t}:twice {t}:twice SLIDING 5 60000 SLIDING 5 60000",
    );
    assert_eq!(reply, (1, vec![4, 3]), "{who}: RL.ALL");
    let twice = stored_state(p, b"{t}:twice").unwrap();
    assert_propagated(
        p,
        "an RL.ALL naming one key twice propagates its final state once",
        &[&[b"RL.SETSTATE", b"{t}:twice", &twice]],
    );

    assert_eq!(release(p, who, b"leases", b"\x00a"), 1, "{who}");
    let leases = stored_state(p, b"leases").unwrap();
    assert_propagated(
        p,
        "a RELEASE that leaves leases propagates them",
        &[&[b"RL.SETSTATE", b"leases", &leases]],
    );

    let reply = acquire(p, who, LEASE_KEY, "3 1000", b"\x00short");
    assert_eq!(reply[..3], [1, 3, 2], "{who}");
    let short = stored_state(p, LEASE_KEY).unwrap();
    let reply = acquire(p, who, LEASE_KEY, "3 60000", b"long\xff");
    assert_eq!(reply[..3], [1, 3, 1], "{who}");
    let both = stored_state(p, LEASE_KEY).unwrap();
    assert_propagated(
        p,
        "each allowed ACQUIRE propagates the leases",
        &[
            &[b"RL.SETSTATE", LEASE_KEY, &short],
            &[b"RL.SETSTATE", LEASE_KEY, &both],
        ],
    );

    // Two seconds later the short lease has ended: a RELEASE of a lease nobody holds
    // drops it, and propagates what is left.
    clock.set(p, 2_000);
    assert_eq!(release(p, who, LEASE_KEY, b"nobody"), 0, "{who}");
    let left = stored_state(p, LEASE_KEY).unwrap();
    let Ok(Limiter::Concurrency(_, leases)) = Limiter::decode(&left) else {
        panic!("{who}: {left:?}");
    };
    let ids: Vec<&[u8]> = leases.held().iter().map(|lease| &*lease.id).collect();
    assert_eq!(ids, [b"long\xff"], "{who}: {leases:?}");
    assert_propagated(
        p,
        "a RELEASE that drops ended leases propagates the leases left",
        &[&[b"RL.SETSTATE", LEASE_KEY, &left]],
    );

    assert_eq!(release(p, who, LEASE_KEY, b"long\xff"), 1, "{who}");
    let exists: i64 = redis::cmd("EXISTS").arg(LEASE_KEY).query(p).unwrap();
    assert_eq!(exists, 0, "{who}: releasing the last lease deletes the key");
    assert_propagated(
        p,
        "releasing the last lease propagates DEL",
        &[&[b"DEL", LEASE_KEY]],
    );
}

/// What other clients see of a call that writes nothing. Like a replica, a client that
/// `WATCH`es limiter keys must not see a write when a request was denied, peeked or of
/// cost 0: its transaction must still commit.
#[test]
fn calls_that_write_nothing_do_not_abort_a_transaction_watching_the_key() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let mut watcher = server.connection();
        let mut caller = server.connection();
        let clock = Clock::aligned(&mut caller);
        clock.set(&mut caller, 0);
        // Every limiter full, but the lease key (one of two held).
        let setup: [(&str, [i64; 3]); 6] = [
            ("RL.TOKENBUCKET bucket 1 1 60000", [1, 1, 0]),
            ("RL.THROTTLE cell 0 1 60", [0, 1, 0]),
            ("RL.SLIDING log 1 60000", [1, 1, 0]),
            ("RL.SLIDING approx 1 86400000 APPROX", [1, 1, 0]),
            ("RL.FIXED fixed 1 86400000", [1, 1, 0]),
            ("RL.ACQUIRE leases 2 60000 \x00held", [1, 2, 1]),
        ];
        for (call, expected) in setup {
            let reply: Vec<i64> = line(call).query(&mut caller).unwrap();
            assert_eq!(reply[..3], expected, "{who}: {call}");
        }
        let watched = [
            "bucket", "cell", "log", "approx", "fixed", "leases", "fresh", "missing",
        ];

        // (call, first field of the reply; -1: not a decision)
        let calls: [(&str, i64); 25] = [
            ("RL.TOKENBUCKET bucket 1 1 60000 PEEK", 0),
            ("RL.TOKENBUCKET bucket 1 1 60000 COST 0", 1),
            ("RL.TOKENBUCKET bucket 1 1 60000", 0),
            ("RL.TOKENBUCKET bucket 1 1 60000 COST 1 MAXWAIT 10", 0),
            ("RL.THROTTLE cell 0 1 60", 1),
            ("RL.SLIDING log 1 60000", 0),
            ("RL.SLIDING log 1 60000 PEEK", 0),
            ("RL.SLIDING log 5 60000 PEEK", 1),
            ("RL.SLIDING log 1 60000 COST 0", 1),
            ("RL.SLIDING approx 1 86400000 APPROX", 0),
            ("RL.SLIDING approx 5 86400000 APPROX PEEK", 1),
            ("RL.FIXED fixed 1 86400000", 0),
            ("RL.FIXED fixed 1 86400000 COST 0", 1),
            ("RL.FIXED missing 1 86400000 PEEK", 1),
            ("RL.ALL 2 log fixed SLIDING 1 60000 FIXED 1 86400000", 0),
            ("RL.ALL 2 fresh fixed SLIDING 1 60000 FIXED 1 86400000", 0),
            ("RL.ALL 2 fresh log SLIDING 5 60000 SLIDING 5 60000 PEEK", 1),
            (
                "RL.ALL 2 fresh log SLIDING 5 60000 SLIDING 5 60000 COST 0",
                1,
            ),
            ("RL.ACQUIRE leases 1 60000 other", 0),
            ("RL.RELEASE leases other", 0),
            ("RL.RELEASE missing other", 0),
            ("RL.STATUS bucket", -1),
            ("RL.STATUS leases", -1),
            ("RL.RESET missing", -1),
            ("RL.RESET fresh missing", -1),
        ];
        let mut aborted_by = Vec::new();
        for (call, first) in calls {
            let () = redis::cmd("WATCH")
                .arg(&watched)
                .query(&mut watcher)
                .unwrap();
            let reply: Value = line(call)
                .query(&mut caller)
                .unwrap_or_else(|e| panic!("{who}: {call}: {e}"));
            if first >= 0 {
                assert_eq!(first_field(&reply), first, "{who}: {call}: {reply:?}");
            }
            let committed: Option<(String,)> = redis::pipe()
                .atomic()
                .cmd("PING")
                .query(&mut watcher)
                .unwrap();
            if committed.is_none() {
                aborted_by.push(call);
            }
        }
        assert!(
            aborted_by.is_empty(),
            "{who}: these calls change nothing, yet abort a transaction that WATCHes \
             their keys: {aborted_by:?}"
        );

        // The watch does see a write: one that changes a key.
        let () = redis::cmd("WATCH")
            .arg(&watched)
            .query(&mut watcher)
            .unwrap();
        assert_eq!(
            release(&mut caller, who, b"leases", b"\x00held"),
            1,
            "{who}"
        );
        let committed: Option<(String,)> = redis::pipe()
            .atomic()
            .cmd("PING")
            .query(&mut watcher)
            .unwrap();
        assert_eq!(committed, None, "{who}: a RELEASE that releases is a write");
    }
}
