//! RL.SLIDING (exact and APPROX), RL.FIXED, RL.ALL and RL.ACQUIRE/RL.RELEASE on every
//! server binary, with time moved by the test clock.

mod common;

use common::{assert_near, decide, digest, error, servers, set_clock};
use redis::{Value, cmd};

/// A clock offset that puts the module's "now" at least 100 ms after the start of a
/// `window_ms` window (so the wall-clock time a test takes stays inside one window).
fn align(con: &mut redis::Connection, window_ms: u64) -> u64 {
    let (seconds, micros): (u64, u64) = cmd("TIME").query(con).unwrap();
    let now = seconds * 1_000 + micros / 1_000;
    let offset = window_ms * 1_000 - now % window_ms + 100;
    set_clock(con, offset);
    offset
}

#[test]
fn sliding_counts_each_request_until_it_leaves_the_window() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 1_000_000);
        assert_near(
            decide(con, &["RL.SLIDING", "s", "3", "10000"]),
            [1, 3, 2, 0, 10_000],
            name,
        );
        set_clock(con, 1_004_000);
        assert_near(
            decide(con, &["RL.SLIDING", "s", "3", "10000", "COST", "2"]),
            [1, 3, 0, 0, 10_000],
            name,
        );
        let denied = decide(con, &["RL.SLIDING", "s", "3", "10000"]);
        assert_near(
            denied,
            [0, 3, 0, 6_000, 10_000],
            &format!("{name}: the first request leaves in 6 s"),
        );
        let before = digest(con, "s");
        assert_eq!(
            decide(con, &["RL.SLIDING", "s", "3", "10000", "PEEK"])[0],
            0,
            "{name}"
        );
        assert_eq!(
            digest(con, "s"),
            before,
            "{name}: denied and PEEK change nothing"
        );
        set_clock(con, 1_010_000);
        assert_eq!(
            decide(con, &["RL.SLIDING", "s", "3", "10000"])[..3],
            [1, 3, 0],
            "{name}"
        );
        set_clock(con, 1_014_000);
        assert_eq!(
            decide(con, &["RL.SLIDING", "s", "3", "10000", "COST", "2"])[..3],
            [1, 3, 0],
            "{name}"
        );
        assert_eq!(
            decide(con, &["RL.SLIDING", "s", "3", "10000", "COST", "4"])[3],
            -1,
            "{name}: never"
        );
    }
}

#[test]
fn a_hundred_requests_in_a_minute_take_little_memory() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        for i in 0..100u64 {
            set_clock(con, 1_000_000 + i * 600);
            assert_eq!(
                decide(con, &["RL.SLIDING", "log", "100", "60000"])[0],
                1,
                "{name}"
            );
        }
        let usage: i64 = cmd("MEMORY").arg("USAGE").arg("log").query(con).unwrap();
        assert!(usage <= 600, "{name}: MEMORY USAGE {usage}");
        assert_eq!(
            decide(con, &["RL.SLIDING", "log", "100", "60000"])[0],
            0,
            "{name}"
        );
    }
}

#[test]
fn approx_weighs_the_previous_window() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        let offset = align(con, 10_000);
        assert_eq!(
            decide(
                con,
                &["RL.SLIDING", "a", "10", "10000", "APPROX", "COST", "10"]
            )[..3],
            [1, 10, 0],
            "{name}"
        );
        // A quarter into the next window: 10 * 0.74 = 7.4 estimated; 2 fit, 3 do not.
        set_clock(con, offset + 12_500);
        assert_eq!(
            decide(
                con,
                &[
                    "RL.SLIDING",
                    "a",
                    "10",
                    "10000",
                    "APPROX",
                    "PEEK",
                    "COST",
                    "2"
                ]
            )[0],
            1,
            "{name}"
        );
        let denied = decide(
            con,
            &["RL.SLIDING", "a", "10", "10000", "APPROX", "COST", "3"],
        );
        assert_eq!(denied[..3], [0, 10, 2], "{name}");
        assert!((0..=500).contains(&denied[3]), "{name}: {denied:?}");
        assert!(
            error(con, &["RL.SLIDING", "a", "10", "10000"]).starts_with("WRONGTYPE"),
            "{name}: exact vs APPROX"
        );
    }
}

#[test]
fn fixed_windows_align_to_the_epoch() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        align(con, 60_000);
        assert_near(
            decide(con, &["RL.FIXED", "f", "2", "60000"]),
            [1, 2, 1, 0, 59_900],
            name,
        );
        assert_eq!(
            decide(con, &["RL.FIXED", "f", "2", "60000"])[..3],
            [1, 2, 0],
            "{name}"
        );
        let denied = decide(con, &["RL.FIXED", "f", "2", "60000"]);
        assert_near(denied, [0, 2, 0, 59_900, 59_900], name);
        let pexpiretime: i64 = cmd("PEXPIRETIME").arg("f").query(con).unwrap();
        assert_eq!(
            pexpiretime % 60_000,
            0,
            "{name}: expires at the window's end (clock offset is whole windows + 100 ms)"
        );
    }
}

#[test]
fn a_write_within_the_window_leaves_the_expiry_as_it_is() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        align(con, 60_000);
        assert_eq!(
            decide(con, &["RL.FIXED", "g", "5", "60000"])[..3],
            [1, 5, 4]
        );
        let expire: i64 = cmd("PEXPIRETIME").arg("g").query(con).unwrap();
        assert_eq!(expire % 60_000, 0, "{name}: the window's end");
        // The next write in the window derives the same expiry: it does not set it
        // again (docs/commands.md, "Idle keys vanish"), so a PERSIST stays until then.
        let _: i64 = cmd("PERSIST").arg("g").query(con).unwrap();
        assert_eq!(
            decide(con, &["RL.FIXED", "g", "5", "60000"])[..3],
            [1, 5, 3]
        );
        let kept: i64 = cmd("PEXPIRETIME").arg("g").query(con).unwrap();
        assert_eq!(kept, -1, "{name}: expiry not set again within the window");
    }
}

#[test]
fn all_counts_everywhere_or_nowhere() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 5_000_000);
        let call = |con: &mut redis::Connection, cost: &str| -> Vec<Value> {
            cmd("RL.ALL")
                .arg(2)
                .arg("{u:42}:m")
                .arg("{u:42}:h")
                .arg(&[
                    "SLIDING", "10", "60000", "FIXED", "12", "3600000", "COST", cost,
                ])
                .query(con)
                .unwrap()
        };
        let first = call(con, "8");
        assert_eq!(first[0], Value::Int(1), "{name}");
        let before = (digest(con, "{u:42}:m"), digest(con, "{u:42}:h"));
        // 8 + 3 > 10 on the minute key: nothing is counted on the hour key either.
        let denied = call(con, "3");
        assert_eq!(denied[0], Value::Int(0), "{name}");
        let per_key: Vec<Vec<i64>> = denied[1..]
            .iter()
            .map(|v| redis::from_redis_value(v).unwrap())
            .collect();
        assert_eq!(per_key[0][..3], [0, 10, 2], "{name}: the minute key denies");
        assert_eq!(
            per_key[1][..3],
            [1, 12, 1],
            "{name}: the hour key alone would allow"
        );
        assert_eq!(
            (digest(con, "{u:42}:m"), digest(con, "{u:42}:h")),
            before,
            "{name}: nothing counted"
        );
        assert_eq!(call(con, "2")[0], Value::Int(1), "{name}");
        let hour: Vec<Value> = cmd("RL.STATUS").arg("{u:42}:h").query(con).unwrap();
        let at = hour
            .iter()
            .position(|v| *v == Value::BulkString(b"remaining".to_vec()))
            .unwrap();
        let remaining: i64 = redis::from_redis_value(&hour[at + 1]).unwrap();
        assert_eq!(
            remaining, 1,
            "{name}: 8 + 2 counted on the hour key, 1 more peeked"
        );
        let keys: Vec<String> = cmd("COMMAND")
            .arg("GETKEYS")
            .arg("RL.ALL")
            .arg(2)
            .arg("a")
            .arg("b")
            .arg(&["FIXED", "1", "1", "FIXED", "1", "1"])
            .query(con)
            .unwrap();
        assert_eq!(keys, ["a", "b"], "{name}");
        assert_eq!(
            error(
                con,
                &[
                    "RL.ALL", "2", "a", "b", "FIXED", "1", "1", "LEAKY", "1", "1"
                ]
            ),
            "ERR syntax error near 'LEAKY' (policy 2 of 2 must be TOKENBUCKET, SLIDING or FIXED)",
            "{name}"
        );
        assert_eq!(
            error(con, &["RL.ALL", "3", "a", "b", "c"]),
            "ERR wrong number of arguments for 'rl.all' command",
            "{name}"
        );
        let _: () = cmd("SET").arg("plain").arg("x").query(con).unwrap();
        assert!(
            error(
                con,
                &[
                    "RL.ALL", "2", "n", "plain", "FIXED", "1", "1000", "FIXED", "1", "1000"
                ]
            )
            .starts_with("WRONGTYPE"),
            "{name}"
        );
        assert_eq!(
            cmd("EXISTS").arg("n").query::<i64>(con).unwrap(),
            0,
            "{name}: nothing written on WRONGTYPE"
        );
    }
}

#[test]
fn a_key_named_twice_in_all_sees_its_own_pending_count() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        let reply: Vec<Value> = cmd("RL.ALL")
            .arg(2)
            .arg("k")
            .arg("k")
            .arg(&[
                "FIXED", "5", "3600000", "FIXED", "5", "3600000", "COST", "3",
            ])
            .query(con)
            .unwrap();
        assert_eq!(reply[0], Value::Int(0), "{name}: 3 + 3 > 5");
        assert_eq!(
            cmd("EXISTS").arg("k").query::<i64>(con).unwrap(),
            0,
            "{name}"
        );
        let reply: Vec<Value> = cmd("RL.ALL")
            .arg(2)
            .arg("k")
            .arg("k")
            .arg(&[
                "FIXED", "5", "3600000", "FIXED", "5", "3600000", "COST", "2",
            ])
            .query(con)
            .unwrap();
        assert_eq!(reply[0], Value::Int(1), "{name}");
        assert_eq!(
            decide(con, &["RL.FIXED", "k", "5", "3600000", "PEEK"])[2],
            0,
            "{name}: 4 counted, 1 peeked"
        );
    }
}

#[test]
fn leases_limit_concurrency_renew_and_expire() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 2_000_000);
        assert_near(
            decide(con, &["RL.ACQUIRE", "jobs", "2", "30000", "a"]),
            [1, 2, 1, 0, 30_000],
            name,
        );
        assert_eq!(
            decide(con, &["RL.ACQUIRE", "jobs", "2", "30000", "b"])[..3],
            [1, 2, 0],
            "{name}"
        );
        set_clock(con, 2_010_000);
        let denied = decide(con, &["RL.ACQUIRE", "jobs", "2", "30000", "c"]);
        assert_near(denied, [0, 2, 0, 20_000, 20_000], name);
        // Renewing "a" pushes its expiry; "c" then waits for "b".
        assert_eq!(
            decide(con, &["RL.ACQUIRE", "jobs", "2", "30000", "a"])[..3],
            [1, 2, 0],
            "{name}"
        );
        assert_near(
            decide(con, &["RL.ACQUIRE", "jobs", "2", "30000", "c"]),
            [0, 2, 0, 20_000, 30_000],
            name,
        );
        assert_eq!(
            cmd("RL.RELEASE")
                .arg("jobs")
                .arg("b")
                .query::<i64>(con)
                .unwrap(),
            1,
            "{name}"
        );
        assert_eq!(
            cmd("RL.RELEASE")
                .arg("jobs")
                .arg("b")
                .query::<i64>(con)
                .unwrap(),
            0,
            "{name}"
        );
        assert_eq!(
            decide(con, &["RL.ACQUIRE", "jobs", "2", "30000", "c"])[0],
            1,
            "{name}"
        );
        // A crashed holder never leaks its slot: 30 s later both leases expired.
        set_clock(con, 2_050_000);
        assert_eq!(
            decide(con, &["RL.ACQUIRE", "jobs", "2", "30000", "d"])[..3],
            [1, 2, 1],
            "{name}"
        );
        assert_eq!(
            cmd("RL.RELEASE")
                .arg("jobs")
                .arg("d")
                .query::<i64>(con)
                .unwrap(),
            1,
            "{name}"
        );
        assert_eq!(
            cmd("EXISTS").arg("jobs").query::<i64>(con).unwrap(),
            0,
            "{name}: no lease left, no key"
        );
        let long_id = "x".repeat(257);
        assert_eq!(
            error(con, &["RL.ACQUIRE", "jobs", "2", "30000", &long_id]),
            "ERR lease_id must be at most 256 bytes",
            "{name}"
        );
        decide(con, &["RL.FIXED", "w", "1", "1000"]);
        assert_eq!(
            error(con, &["RL.RELEASE", "w", "a"]),
            "WRONGTYPE the key holds a fixed limiter",
            "{name}"
        );
    }
}
