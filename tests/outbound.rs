//! Outbound quotas on every server: `RL.ALL` with a cost per key (`COSTS`) and one
//! reservation across token buckets (`MAXWAIT`), `RL.ADJUST` (refunds and charges after
//! the fact), and the exact replication and AOF replay of what they write; the client's
//! `admit` and `Permit::settle` (`outbound/admit.rs`) and a fleet of two limiters against
//! a simulated provider (`outbound/fleet.rs`). The client's tests run on the engine
//! `REDLIMIT_TEST_ENGINE` names (`scripts`: servers without the module); one runs on
//! the scripts always.
//!
//! Build the module first (`cargo build -p redlimit-module`). Time moves with the
//! module's clock offset; durations are compared within the wall-clock time a test takes.

#[path = "outbound/admit.rs"]
mod admit;
#[path = "outbound/anchored.rs"]
mod anchored;
#[path = "live/calls.rs"]
mod calls;
#[path = "outbound/fleet.rs"]
mod fleet;

use calls::{servers, show, with_module};
use redis::{Connection, Value};
use redlimit::{Backend, ServerEngine};
use redlimit_test_support::{Server, TestEngine, test_engine};
use redlimit_test_support::{info_value, set_clock_offset, snapshot};

/// One server per binary for the client's tests: with the module, or without it when
/// `REDLIMIT_TEST_ENGINE` names the scripts (the client then decides through them).
fn servers_for_client() -> impl Iterator<Item = Server> {
    servers().into_iter().map(|binary| {
        if test_engine().loads_module() {
            with_module(&binary).start()
        } else {
            redlimit_test_support::ServerBuilder::new(&binary).start()
        }
    })
}

/// The client's backend for `url`, deciding with the engine `REDLIMIT_TEST_ENGINE` names.
fn client_backend(url: &str) -> Backend {
    let engine = match test_engine() {
        TestEngine::Module => ServerEngine::Module,
        TestEngine::Scripts => ServerEngine::Scripts,
        TestEngine::Auto => ServerEngine::Auto,
    };
    Backend::redis(url).unwrap().with_engine(engine)
}

/// A command written out, split on spaces.
fn line(line: &str) -> redis::Cmd {
    let mut words = line.split_whitespace();
    let mut cmd = redis::cmd(words.next().unwrap_or_default());
    for word in words {
        cmd.arg(word);
    }
    cmd
}

/// `RL.ALL <args>`: the overall `allowed` and each key's decision.
fn all_of(con: &mut Connection, who: &str, args: &str) -> (i64, Vec<Vec<i64>>) {
    let reply: Vec<Value> = line(&format!("RL.ALL {args}"))
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: RL.ALL {args}: {e}"));
    let allowed = redis::from_redis_value(&reply[0]).unwrap();
    let decisions = reply[1..]
        .iter()
        .map(|decision| redis::from_redis_value(decision).unwrap())
        .collect();
    (allowed, decisions)
}

/// A command answering a decision (or nil).
fn decision(con: &mut Connection, who: &str, args: &str) -> Option<Vec<i64>> {
    line(args)
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: {args}: {e}"))
}

/// The error a command answers.
fn error(con: &mut Connection, args: &str) -> String {
    let error = line(args)
        .query::<Value>(con)
        .expect_err(&format!("{args} should fail"));
    format!(
        "{} {}",
        error.code().unwrap_or_default(),
        error.detail().unwrap_or_default()
    )
}

/// `actual` is `expected` less at most 200 ms of wall-clock time (the test clock offsets
/// the server's clock; it does not stop it).
#[track_caller]
fn assert_ms(actual: i64, expected: i64, who: &str) {
    assert!(
        (expected - 200..=expected).contains(&actual),
        "{who}: {actual} ms, expected about {expected} ms"
    );
}

const LANE: &str = "2 {p}:rpm {p}:tpm TOKENBUCKET 3 3 60000 TOKENBUCKET 1000 1000 60000";

#[test]
fn each_key_takes_its_cost_and_a_reservation_acts_once_for_all() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let con = &mut server.connection();
        set_clock_offset(con, 1_000_000);
        // One request, 900 tokens.
        let (allowed, d) = all_of(con, who, &format!("{LANE} COSTS 1 900"));
        assert_eq!((allowed, d[0][2], d[1][2]), (1, 2, 100), "{who}: {d:?}");
        // Without MAXWAIT the tokens are short: nothing counted anywhere.
        let (allowed, d) = all_of(con, who, &format!("{LANE} COSTS 1 900"));
        assert_eq!((allowed, d[0][0], d[1][0]), (0, 1, 0), "{who}: {d:?}");
        assert_ms(d[1][3], 48_000, who);
        // With MAXWAIT: admitted to act in 48 s, when 800 more tokens have come back;
        // both limits count it then, so neither has anything left for anyone before.
        let (allowed, d) = all_of(con, who, &format!("{LANE} COSTS 1 900 MAXWAIT 60000"));
        assert_eq!(allowed, 1, "{who}: {d:?}");
        assert_eq!(d[0][..3], [1, 3, 0], "{who}");
        assert_eq!(d[1][..3], [1, 1_000, 0], "{who}");
        assert_ms(d[0][3], 48_000, who);
        assert_eq!(d[0][3], d[1][3], "{who}: one act time for every limit");
        // The next reservation queues behind it: 102 s away, beyond a 60 s MAXWAIT.
        let (allowed, d) = all_of(con, who, &format!("{LANE} COSTS 1 900 MAXWAIT 60000"));
        assert_eq!((allowed, d[1][0]), (0, 0), "{who}: {d:?}");
        assert_ms(d[1][3], 42_000, who);
        // At the act time the tokens were spent exactly: 900 at 48 s, nothing left; and
        // from then on the bucket refills as if charged then (100 more in 6 s).
        let peek = "RL.TOKENBUCKET {p}:tpm 1000 1000 60000 COST 0";
        set_clock_offset(con, 1_000_000 + 48_000);
        assert_eq!(decision(con, who, peek).unwrap()[2], 0, "{who}");
        set_clock_offset(con, 1_000_000 + 54_000);
        assert_eq!(decision(con, who, peek).unwrap()[2], 100, "{who}");
        // MAXWAIT 0 takes any policy; above 0 only token buckets.
        let mixed = "2 {p}:a {p}:b TOKENBUCKET 3 3 60000 SLIDING 5 1000";
        assert_eq!(
            all_of(con, who, &format!("{mixed} MAXWAIT 0")).0,
            1,
            "{who}"
        );
        assert_eq!(
            error(con, &format!("RL.ALL {mixed} MAXWAIT 10")),
            "ERR MAXWAIT must be 0 unless every policy is a TOKENBUCKET (policy 2 is SLIDING: \
             a window cannot hold a reservation exactly)",
            "{who}"
        );
        for (args, expected) in [
            (
                "COSTS 1",
                "ERR syntax error: COSTS needs one cost per key (2 keys, 1 costs)",
            ),
            (
                "COST 1 COSTS 1 2",
                "ERR syntax error: COST and COSTS together (COSTS gives each key its own cost)",
            ),
            ("COSTS 1 -2", "ERR COSTS must be a non-negative integer"),
            (
                "COSTS 1 4611686018427387905",
                "ERR COSTS must be at most 4611686018427387904",
            ),
        ] {
            assert_eq!(
                error(con, &format!("RL.ALL {LANE} {args}")),
                expected,
                "{who}"
            );
        }
    }
}

#[test]
fn adjust_refunds_up_to_full_and_charges_into_a_bounded_debt() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let con = &mut server.connection();
        set_clock_offset(con, 2_000_000);
        let bucket = "TOKENBUCKET 1000 1000 60000";
        decision(con, who, "RL.TOKENBUCKET t 1000 1000 60000 COST 900");
        // The call used 300 tokens: 600 back. The reply is what a cost of 1 would get.
        let d = decision(con, who, "RL.ADJUST t -600").unwrap();
        assert_eq!(d[..4], [1, 1_000, 699, 0], "{who}: {d:?}");
        // Never above full.
        let d = decision(con, who, "RL.ADJUST t -5000").unwrap();
        assert_eq!(d[..3], [1, 1_000, 999], "{who}: {d:?}");
        // A full bucket is no key: without a policy there is nothing to adjust.
        assert_eq!(decision(con, who, "RL.ADJUST t 5"), None, "{who}");
        assert_eq!(decision(con, who, "RL.ADJUST absent -5"), None, "{who}");
        // With the policy, a charge starts from a full bucket and stops at -capacity.
        let d = decision(con, who, &format!("RL.ADJUST t 2500 {bucket}")).unwrap();
        assert_eq!(d[..3], [0, 1_000, 0], "{who}: {d:?}");
        assert_ms(d[3], 60_060, who);
        // Windows: counts down to 0, up to the limit.
        decision(con, who, "RL.FIXED f 10 60000 COST 8");
        assert_eq!(decision(con, who, "RL.ADJUST f -5").unwrap()[2], 6, "{who}");
        assert_eq!(
            decision(con, who, "RL.ADJUST f 100").unwrap()[..3],
            [0, 10, 0]
        );
        decision(con, who, "RL.SLIDING s 5 60000 COST 3");
        assert_eq!(decision(con, who, "RL.ADJUST s -2").unwrap()[2], 3, "{who}");
        decision(con, who, "RL.SLIDING a 5 60000 COST 4 APPROX");
        assert_eq!(decision(con, who, "RL.ADJUST a -4").unwrap()[2], 4, "{who}");
        // A throttle of 5 (one a second): 3 taken, 2 given back.
        decision(con, who, "RL.THROTTLE th 4 1 1 3");
        assert_eq!(
            decision(con, who, "RL.ADJUST th -2").unwrap()[2],
            3,
            "{who}"
        );
        // Errors name the input.
        let _: Value = line("RL.ACQUIRE c 2 1000 id").query(con).unwrap();
        let _: () = line("SET str x").query(con).unwrap();
        for (args, expected) in [
            (
                "RL.ADJUST c -1",
                "WRONGTYPE the key holds a concurrency limiter",
            ),
            (
                "RL.ADJUST str 1",
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            (
                "RL.ADJUST t 1 FIXED 5 1000",
                "WRONGTYPE the key holds a tokenbucket limiter",
            ),
            (
                "RL.ADJUST t x",
                "ERR delta must be an integer between -4611686018427387904 and 4611686018427387904",
            ),
            (
                "RL.ADJUST t -4611686018427387905",
                "ERR delta must be an integer between -4611686018427387904 and 4611686018427387904",
            ),
            (
                "RL.ADJUST t 1 LEAKY 5",
                "ERR syntax error near 'LEAKY' (the policy must be TOKENBUCKET, THROTTLE, SLIDING or FIXED)",
            ),
            (
                "RL.ADJUST t 1 FIXED 5 1000 EXTRA",
                "ERR syntax error near 'EXTRA'",
            ),
            (
                "RL.ADJUST t",
                "ERR wrong number of arguments for 'rl.adjust' command",
            ),
        ] {
            assert_eq!(error(con, args), expected, "{who}: {args}");
        }
    }
}

#[test]
fn reservations_and_adjustments_replicate_and_replay_exactly() {
    for binary in servers() {
        let who = binary.name();
        let primary = with_module(&binary)
            .args(["--appendonly", "yes", "--aof-use-rdb-preamble", "no"])
            .start();
        // The replica's clock is two hours ahead: a re-run decision would differ.
        let replica = with_module(&binary)
            .module_args(["clock-offset-ms", "7200000"])
            .replica_of(&primary)
            .start();
        replica.wait_for_sync();
        let (p, r) = (&mut primary.connection(), &mut replica.connection());
        set_clock_offset(p, 3_000_000);
        all_of(p, who, &format!("{LANE} COSTS 1 900"));
        all_of(p, who, &format!("{LANE} COSTS 1 700 MAXWAIT 60000"));
        decision(p, who, "RL.ADJUST {p}:tpm -450");
        decision(p, who, "RL.ADJUST {p}:rpm 1");
        decision(p, who, "RL.SLIDING s 50 60000 COST 30");
        decision(p, who, "RL.ADJUST s -7");
        decision(p, who, "RL.ADJUST fresh 40 FIXED 100 3600000");
        // A long log: its state outweighs the call, so the call goes as RL.REPLAY.
        for _ in 0..300 {
            decision(p, who, "RL.SLIDING long 1000 60000");
        }
        let replays = |r: &mut Connection| info_value(r, "commandstats", "cmdstat_rl.replay");
        let _: i64 = redis::cmd("WAIT").arg(1).arg(5_000).query(p).unwrap();
        let replays_before = replays(r);
        decision(p, who, "RL.ADJUST long -120 SINCE 5");
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(5_000).query(p).unwrap();
        assert_eq!(acked, 1, "{who}");
        assert_ne!(
            replays(r),
            replays_before,
            "{who}: RL.ADJUST went as RL.REPLAY"
        );
        let keys: [&[u8]; 5] = [b"{p}:rpm", b"{p}:tpm", b"s", b"fresh", b"long"];
        let before: Vec<_> = keys.iter().map(|key| snapshot(p, *key)).collect();
        for (key, state) in keys.iter().zip(&before) {
            assert!(state.is_some(), "{who}: {} missing", show(key));
            assert_eq!(
                &snapshot(r, *key),
                state,
                "{who}: {} on the replica",
                show(key)
            );
        }
        // The AOF replayed in place gives the same states (and expiries).
        let _: () = redis::cmd("DEBUG").arg("LOADAOF").query(p).unwrap();
        for (key, state) in keys.iter().zip(&before) {
            assert_eq!(
                &snapshot(p, *key),
                state,
                "{who}: {} after the AOF",
                show(key)
            );
        }
    }
}

/// Random argument vectors for `RL.ADJUST` (numbers, signs, policy words, junk, keys of
/// every kind): every reply is an error naming its input, nil or a decision, and the
/// server keeps answering.
#[test]
fn adjust_answers_any_arguments_without_harm() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let word = prop_oneof![
        Just("TOKENBUCKET".to_owned()),
        Just("THROTTLE".to_owned()),
        Just("SLIDING".to_owned()),
        Just("FIXED".to_owned()),
        Just("APPROX".to_owned()),
        Just("SINCE".to_owned()),
        Just("since".to_owned()),
        (-5i64..5_000).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("4611686018427387905".to_owned()),
        Just("-4611686018427387905".to_owned()),
        Just("--3".to_owned()),
        Just(String::new()),
        "[ -~]{0,6}",
    ];
    let call = (
        prop::sample::select(vec!["tb", "fx", "sl", "ap", "th", "lease", "str", "none"]),
        prop::collection::vec(word, 0..9),
    );
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let con = &mut server.connection();
        for setup in [
            "RL.TOKENBUCKET tb 10 1 1000 COST 4",
            "RL.FIXED fx 10 60000 COST 4",
            "RL.SLIDING sl 10 60000 COST 4",
            "RL.SLIDING ap 10 60000 COST 4 APPROX",
            "RL.THROTTLE th 9 1 1 4",
            "RL.ACQUIRE lease 2 60000 id",
            "SET str x",
        ] {
            let _: Value = line(setup).query(con).unwrap();
        }
        let shared = std::cell::RefCell::new(server.connection());
        let mut runner = TestRunner::new(Config {
            cases: 300,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&call, |(key, args)| {
                let mut cmd = redis::cmd("RL.ADJUST");
                cmd.arg(key);
                for arg in &args {
                    cmd.arg(arg);
                }
                match cmd.query::<Value>(&mut *shared.borrow_mut()) {
                    Ok(Value::Nil) => {}
                    Ok(Value::Array(fields)) => prop_assert_eq!(fields.len(), 5),
                    Ok(other) => prop_assert!(false, "{who}: {other:?}"),
                    Err(error) => {
                        let code = error.code().unwrap_or_default();
                        prop_assert!(code == "ERR" || code == "WRONGTYPE", "{who}: {error}");
                    }
                }
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{who}: {e}"));
        let pong: String = redis::cmd("PING").query(con).unwrap();
        assert_eq!(pong, "PONG", "{who}");
        // The limiters written along the way all decode (RL.STATUS reads them).
        for key in ["tb", "fx", "sl", "ap", "th", "none"] {
            let _: Value = line(&format!("RL.STATUS {key}")).query(con).unwrap();
        }
    }
}
