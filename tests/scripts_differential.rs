//! One truth: the script engine (`client/lua/`) against the redlimit module, on the same
//! random timelines, on Redis 7.0, Redis 8.2 and Valkey 9.1. Every call is sent to both
//! at the same instant (the module through `RL.REPLAY <micros>`, the scripts through
//! their test-only time override), and their replies must be identical, integer for
//! integer: decisions, retry and reset times, throttle seconds, `RL.STATUS` fields.
//!
//! `REDLIMIT_DIFF_DECISIONS` sets the decisions per algorithm per server (default
//! 20,000; the 100,000 runs in a few minutes, see docs/operations.md). The seed
//! is printed; `REDLIMIT_DIFF_SEED` replays one.
//!
//! Build the module first (`cargo build -p redlimit-module`).

#[path = "scripts/timeline.rs"]
mod timeline;

use redis::Value;
use redlimit::scripts;
use redlimit_test_support::{Flavor, ServerBuilder, available_servers, module_path};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use timeline::{Family, Rng, Timeline};

/// Steps sent per pipeline (each step is one module call and one script call).
const BATCH: usize = 1_000;
/// How far ahead of the real clock the module's test clock runs: RL.REPLAY only accepts
/// times up to the server's clock plus this offset.
const OFFSET_MS: u64 = 30 * 24 * 3_600 * 1_000;

fn decisions() -> usize {
    std::env::var("REDLIMIT_DIFF_DECISIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

fn seed() -> u64 {
    std::env::var("REDLIMIT_DIFF_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// `RL.REPLAY micros <cmd>`.
fn replay(micros: u64, cmd: &redis::Cmd) -> redis::Cmd {
    let mut replay = redis::cmd("RL.REPLAY");
    replay.arg(micros);
    for arg in cmd.args_iter() {
        if let redis::Arg::Simple(bytes) = arg {
            replay.arg(bytes);
        }
    }
    replay
}

fn run_family(con: &mut redis::Connection, family: Family, count: usize, seed: u64, server: &str) {
    let real_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    // A day ahead of the real clock, well within the offset.
    let start = real_now.as_micros() as u64 + 24 * 3_600 * 1_000_000;
    let mut timeline = Timeline::new(family, Rng::new(seed), start);
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let steps: Vec<_> = (0..BATCH.min(count - done))
            .map(|_| timeline.step())
            .collect();
        let mut pipe = redis::pipe();
        for step in &steps {
            pipe.add_command(replay(step.at_us, &step.cmd));
            let mut call = scripts::translate(&step.cmd, Some(step.at_us)).unwrap();
            // Both engines share the server: the scripts must not see the module's keys
            // at the original names (their guard keys, which would be WRONGTYPE).
            call.keys.truncate(call.keys.len() / 2);
            pipe.add_command(call.evalsha());
        }
        let replies: Vec<Value> = pipe.query(con).unwrap_or_else(|error| {
            panic!("{server} {family:?} seed {seed}: a call failed: {error}")
        });
        for (i, step) in steps.iter().enumerate() {
            let (module, script) = (&replies[2 * i], &replies[2 * i + 1]);
            if std::env::var("REDLIMIT_DIFF_SHOW").is_ok() && done + i < 12 {
                println!(
                    "{} @{}: {module:?} | {script:?}",
                    timeline::describe(&step.cmd),
                    step.at_us
                );
            }
            assert_eq!(
                module,
                script,
                "{server} {family:?} seed {seed}, step {}: {} at {} us\nmodule: {module:?}\nscripts: {script:?}",
                done + i,
                timeline::describe(&step.cmd),
                step.at_us
            );
        }
        done += steps.len();
    }
    println!(
        "{server} {family:?}: {count} decisions identical in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Every family, `decisions()` times, on the server of `flavor`.
fn differential(flavor: Flavor) {
    let count = decisions();
    let seed = seed();
    println!("seed {seed}, {count} decisions per algorithm");
    for binary in available_servers()
        .into_iter()
        .filter(|b| b.flavor == flavor)
    {
        let server = ServerBuilder::new(&binary).module(module_path()).start();
        let mut con = server.connection();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("redlimit.clock-offset-ms")
            .arg(OFFSET_MS)
            .query(&mut con)
            .unwrap();
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(scripts::SOURCE)
            .query(&mut con)
            .unwrap();
        assert_eq!(sha, scripts::sha1());
        for (n, family) in Family::ALL.into_iter().enumerate() {
            run_family(
                &mut con,
                family,
                count,
                seed.wrapping_add(n as u64),
                binary.name(),
            );
        }
    }
}

#[test]
fn the_scripts_decide_exactly_as_the_module_on_redis_7_0() {
    differential(Flavor::Redis70);
}

#[test]
fn the_scripts_decide_exactly_as_the_module_on_redis_8_2() {
    differential(Flavor::Redis82);
}

#[test]
fn the_scripts_decide_exactly_as_the_module_on_valkey_9_1() {
    differential(Flavor::Valkey91);
}

#[test]
fn wrong_algorithms_and_foreign_values_are_wrongtype_on_both() {
    for binary in available_servers() {
        let server = ServerBuilder::new(&binary).module(module_path()).start();
        let mut con = server.connection();
        let (mut fixed, mut bucket) = (redis::cmd("RL.FIXED"), redis::cmd("RL.TOKENBUCKET"));
        fixed.arg("k").arg(5).arg(1_000);
        bucket.arg("k").arg(5).arg(1).arg(1_000);
        let (mut fixed2, mut bucket2) = (redis::cmd("RL.FIXED"), redis::cmd("RL.TOKENBUCKET"));
        fixed2.arg("k2").arg(5).arg(1_000);
        bucket2.arg("k2").arg(5).arg(1).arg(1_000);
        let script = |cmd: &redis::Cmd| scripts::translate(cmd, None).unwrap().eval();
        let _: Value = fixed.query(&mut con).unwrap();
        let _: Value = script(&fixed2).query(&mut con).unwrap();
        let module_error = bucket.query::<Value>(&mut con).unwrap_err();
        let script_error = script(&bucket2).query::<Value>(&mut con).unwrap_err();
        assert_eq!(module_error.code(), Some("WRONGTYPE"));
        assert_eq!(script_error.code(), Some("WRONGTYPE"));
        let said = script_error.to_string();
        assert!(said.contains("the key holds a fixed limiter"), "{said}");
        // The module's key at the original name: the scripts refuse it, never start afresh.
        let guarded = script(&fixed).query::<Value>(&mut con).unwrap_err();
        assert_eq!(guarded.code(), Some("WRONGTYPE"), "{}", binary.name());
        // A value the engine did not write, at a name in its namespace.
        let _: () = redis::cmd("SET")
            .arg(scripts::script_key(b"plain"))
            .arg("x")
            .query(&mut con)
            .unwrap();
        let mut on_plain = redis::cmd("RL.FIXED");
        on_plain.arg("plain").arg(5).arg(1_000);
        let error = script(&on_plain).query::<Value>(&mut con).unwrap_err();
        assert_eq!(error.code(), Some("WRONGTYPE"), "{}", binary.name());
        // RL.ADJUST: a lease limit is never adjusted, another algorithm is WRONGTYPE,
        // an absent key without a policy is nil; the same on both.
        let (mut lease, mut lease2) = (redis::cmd("RL.ACQUIRE"), redis::cmd("RL.ACQUIRE"));
        lease.arg("c").arg(2).arg(1_000).arg("id");
        lease2.arg("c2").arg(2).arg(1_000).arg("id");
        let _: Value = lease.query(&mut con).unwrap();
        let _: Value = script(&lease2).query(&mut con).unwrap();
        let adjust = |key: &str, args: &[&str]| {
            let mut cmd = redis::cmd("RL.ADJUST");
            cmd.arg(key).arg(args);
            cmd
        };
        for (module, scripted) in [
            (adjust("c", &["-1"]), adjust("c2", &["-1"])),
            (
                adjust("k", &["1", "TOKENBUCKET", "5", "1", "1000"]),
                adjust("k2", &["1", "TOKENBUCKET", "5", "1", "1000"]),
            ),
        ] {
            let module_error = module.query::<Value>(&mut con).unwrap_err();
            let script_error = script(&scripted).query::<Value>(&mut con).unwrap_err();
            assert_eq!(module_error.code(), Some("WRONGTYPE"), "{}", binary.name());
            // (Redis 7.0 adds where the script failed.)
            let (said, expected) = (script_error.to_string(), module_error.detail().unwrap());
            assert!(
                said.contains(expected),
                "{}: {said} / {expected}",
                binary.name()
            );
        }
        let absent = adjust("absent", &["-3"]);
        let module_reply: Value = absent.query(&mut con).unwrap();
        let script_reply: Value = script(&absent).query(&mut con).unwrap();
        assert_eq!((module_reply, script_reply), (Value::Nil, Value::Nil));
    }
}

#[test]
fn policies_beyond_what_the_scripts_compute_exactly_are_refused_by_name() {
    let binary = available_servers().into_iter().next().expect("a server");
    let server = ServerBuilder::new(&binary).start();
    let mut con = server.connection();
    let refused = |con: &mut redis::Connection, args: &[&str]| -> String {
        let mut cmd = redis::cmd(args[0]);
        cmd.arg(&args[1..]);
        let call = scripts::translate(&cmd, None).unwrap();
        call.eval().query::<Value>(con).unwrap_err().to_string()
    };
    let cases: [(&[&str], &str); 6] = [
        (
            &["RL.SLIDING", "k", "1001", "1000"],
            "limit must be at most 1000 for an exact log on the script engine (use APPROX above)",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1251000", "1", "3600000"],
            "capacity must be at most 1250999 when refill_ms is 3600000 on the script engine",
        ),
        (
            &[
                "RL.SLIDING",
                "k",
                "1099511627776",
                "1099511627776",
                "APPROX",
            ],
            "limit must be at most 2048 when window_ms is 1099511627776 on the script engine",
        ),
        (
            &["RL.FIXED", "k", "5", "1000", "COST", "4611686018427387905"],
            "COST must be at most 4611686018427387904",
        ),
        (
            &["RL.ADJUST", "k", "1", "THROTTLE", "3000000", "1", "1"],
            "max_burst must be at most 2251798 at this rate for RL.ADJUST on the script engine",
        ),
        (
            &[
                "RL.ADJUST",
                "k",
                "-4611686018427387904",
                "TOKENBUCKET",
                "1000",
                "1000000",
                "1000",
                "SINCE",
                "10000000",
            ],
            "delta must be at least -4503599627 for a refund with this SINCE on the script engine",
        ),
    ];
    for (args, expected) in cases {
        let said = refused(&mut con, args);
        assert!(said.contains(expected), "{args:?}: {said}");
    }
    // A cost the scripts cannot count exactly but the contract accepts: never possible.
    let mut huge = redis::cmd("RL.FIXED");
    huge.arg("k").arg(5).arg(1_000).arg("COST").arg(1u64 << 60);
    let reply: Vec<i64> = scripts::translate(&huge, None)
        .unwrap()
        .eval()
        .query(&mut con)
        .unwrap();
    assert_eq!(reply, [0, 5, 5, -1, 0]);
}
