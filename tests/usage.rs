//! Usage counters (`RL.USAGE.ADD`, `RL.USAGE`) on Redis 7.0, Redis 8.2 and Valkey 9.1:
//! buckets fill and roll over, the key vanishes when its newest bucket leaves the ring,
//! it persists through `DEBUG RELOAD`, a replica holds the primary's exact state, RESP3
//! replies are the RESP2 arrays, bad inputs are named, and the other commands treat a
//! counter as a limiter of another kind. The client's API (`tests/usage/client.rs`) on
//! the servers and in memory.
//!
//! Build the module first (`cargo build -p redlimit-module`). Time moves with the
//! module's clock offset (or `RL.REPLAY` at exact times); the only wait is a bounded poll
//! for a real expiry.

#[path = "usage/bounds.rs"]
mod bounds;
#[path = "usage/client.rs"]
mod client;
mod common;

use common::{error, servers, set_clock};
use redis::{Connection, Value, cmd};
use redlimit_test_support::{ServerBuilder, available_servers, module_path, snapshot, status};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const MINUTE: u64 = 60_000;
const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;

fn real_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The start of a UTC day two to three days ahead of the real clock: every time a test
/// sets is after it, so the clock offset stays positive.
fn day_ahead() -> u64 {
    (real_now_ms() / DAY + 2) * DAY
}

/// Moves the module's clock to about `target_ms` (the real clock runs on: a few ms later
/// when the server reads it, always inside the same minute here).
fn clock_at(con: &mut Connection, target_ms: u64) {
    set_clock(con, target_ms - real_now_ms());
}

fn add(con: &mut Connection, key: &str, amount: u64, bucket_ms: u64, buckets: u64) -> i64 {
    cmd("RL.USAGE.ADD")
        .arg(key)
        .arg(amount)
        .arg(bucket_ms)
        .arg(buckets)
        .query(con)
        .unwrap_or_else(|e| panic!("RL.USAGE.ADD {key} {amount}: {e}"))
}

fn usage(con: &mut Connection, key: &str) -> Vec<(u64, u64)> {
    let flat: Vec<u64> = cmd("RL.USAGE").arg(key).query(con).unwrap();
    assert_eq!(flat.len() % 2, 0, "{flat:?}");
    flat.chunks(2).map(|pair| (pair[0], pair[1])).collect()
}

/// The reply expected for a ring of `buckets` of `bucket_ms` whose current bucket starts
/// at `current`, with `filled` amounts by bucket start (every other bucket 0).
fn ring(current: u64, bucket_ms: u64, buckets: u64, filled: &[(u64, u64)]) -> Vec<(u64, u64)> {
    (0..buckets)
        .map(|i| current - (buckets - 1 - i) * bucket_ms)
        .map(|start| {
            let amount = filled
                .iter()
                .filter(|(at, _)| *at == start)
                .map(|(_, amount)| amount)
                .sum();
            (start, amount)
        })
        .collect()
}

fn expire_time(con: &mut Connection, key: &str) -> i64 {
    cmd("PEXPIRETIME").arg(key).query(con).unwrap()
}

#[test]
fn buckets_fill_roll_over_and_leave_the_ring() {
    for server in servers() {
        let con = &mut server.connection();
        let who = server.binary().name();
        let t0 = day_ahead();
        clock_at(con, t0 + MINUTE);
        assert_eq!(add(con, "u", 100, HOUR, 24), 100, "{who}");
        assert_eq!(add(con, "u", 50, HOUR, 24), 150, "{who}");
        assert_eq!(
            usage(con, "u"),
            ring(t0, HOUR, 24, &[(t0, 150)]),
            "{who}: 24 hours, this one last"
        );
        assert_eq!(expire_time(con, "u"), (t0 + DAY) as i64, "{who}");

        clock_at(con, t0 + HOUR + MINUTE);
        assert_eq!(add(con, "u", 10, HOUR, 24), 160, "{who}: a new hour");
        let next = ring(t0 + HOUR, HOUR, 24, &[(t0, 150), (t0 + HOUR, 10)]);
        assert_eq!(usage(con, "u"), next, "{who}");
        assert_eq!(expire_time(con, "u"), (t0 + HOUR + DAY) as i64, "{who}");

        clock_at(con, t0 + DAY + MINUTE);
        assert_eq!(add(con, "u", 0, HOUR, 24), 10, "{who}: the first hour left");
        let day_later = ring(t0 + DAY, HOUR, 24, &[(t0 + HOUR, 10)]);
        assert_eq!(usage(con, "u"), day_later, "{who}");
        assert_eq!(
            expire_time(con, "u"),
            (t0 + HOUR + DAY) as i64,
            "{who}: a zero amount writes nothing"
        );

        clock_at(con, t0 + HOUR + DAY + MINUTE);
        assert_eq!(usage(con, "u"), [], "{who}: the newest hour left: no key");
        assert!(status(con, "u").is_none(), "{who}: RL.STATUS sees no key");
        assert_eq!(add(con, "u", 0, HOUR, 24), 0, "{who}");
        assert_eq!(add(con, "u", 7, HOUR, 24), 7, "{who}: starts again");
    }
}

#[test]
fn a_clock_moved_back_counts_in_the_newest_bucket() {
    for server in servers() {
        let con = &mut server.connection();
        let who = server.binary().name();
        let t0 = day_ahead();
        clock_at(con, t0 + 2 * HOUR + MINUTE);
        add(con, "u", 4, HOUR, 3);
        clock_at(con, t0 + MINUTE);
        assert_eq!(add(con, "u", 5, HOUR, 3), 9, "{who}");
        let expected = ring(t0 + 2 * HOUR, HOUR, 3, &[(t0 + 2 * HOUR, 9)]);
        assert_eq!(usage(con, "u"), expected, "{who}: never rewrites the past");
    }
}

#[test]
fn status_reports_the_shape_and_when_the_key_vanishes() {
    for server in servers() {
        let con = &mut server.connection();
        let who = server.binary().name();
        let t0 = day_ahead();
        clock_at(con, t0 + 10 * MINUTE);
        add(con, "u", 5, HOUR, 24);
        let status = status(con, "u").unwrap();
        assert_eq!(status.algorithm, "usage", "{who}");
        let fields = [
            "bucket_ms",
            "buckets",
            "allowed",
            "limit",
            "remaining",
            "retry_after_ms",
        ]
        .map(|name| status.number(name));
        assert_eq!(fields, [HOUR as i64, 24, 1, 0, 0, 0], "{who}: {status:?}");
        let reset = status.number("reset_after_ms");
        let expected = (DAY - 10 * MINUTE) as i64;
        assert!(
            (expected - 1_000..=expected).contains(&reset),
            "{who}: reset_after_ms {reset}, about {expected}"
        );
    }
}

#[test]
fn bad_inputs_are_named_and_nothing_is_written() {
    for server in servers() {
        let con = &mut server.connection();
        let who = server.binary().name();
        let not_integer = "ERR amount must be a non-negative integer";
        for (args, expected) in [
            (&["RL.USAGE.ADD", "u", "x", "1000", "3"][..], not_integer),
            (&["RL.USAGE.ADD", "u", "-1", "1000", "3"], not_integer),
            (
                &["RL.USAGE.ADD", "u", "4611686018427387905", "1000", "3"],
                "ERR amount must be at most 4611686018427387904",
            ),
            (
                &["RL.USAGE.ADD", "u", "1", "0", "3"],
                "ERR bucket_ms must be a positive integer",
            ),
            (
                &["RL.USAGE.ADD", "u", "1", "1000", "0"],
                "ERR buckets must be a positive integer",
            ),
            (
                &["RL.USAGE.ADD", "u", "1", "1000", "1441"],
                "ERR buckets must be at most 1440",
            ),
            (
                &["RL.USAGE.ADD", "u", "1", "10000000000000", "2"],
                "ERR bucket_ms must be such that bucket_ms * buckets is at most 10000000000000",
            ),
            (
                &["RL.USAGE.ADD", "u", "1", "1000"],
                "ERR wrong number of arguments for 'rl.usage.add' command",
            ),
            (
                &["RL.USAGE", "u", "v"],
                "ERR wrong number of arguments for 'rl.usage' command",
            ),
        ] {
            assert_eq!(error(con, args), expected, "{who}: {args:?}");
        }
        let exists: i64 = cmd("EXISTS").arg("u").query(con).unwrap();
        assert_eq!(exists, 0, "{who}: no error wrote anything");
    }
}

#[test]
fn a_counter_is_its_own_kind_for_every_other_command() {
    for server in servers() {
        let con = &mut server.connection();
        let who = server.binary().name();
        add(con, "u", 5, HOUR, 24);
        assert_eq!(
            error(con, &["RL.USAGE.ADD", "u", "1", "60000", "60"]),
            "ERR bucket_ms and buckets must be the key's: it records 24 buckets of 3600000 \
             ms, not 60 of 60000 ms (RL.RESET the key to change its shape)",
            "{who}"
        );
        let usage_kind = "WRONGTYPE the key holds a usage limiter";
        for args in [
            &["RL.TOKENBUCKET", "u", "3", "1", "1000"][..],
            &["RL.FIXED", "u", "3", "1000"],
            &["RL.SLIDING", "u", "3", "1000", "APPROX"],
            &["RL.THROTTLE", "u", "3", "1", "1"],
            &["RL.ACQUIRE", "u", "1", "1000", "id"],
            &["RL.RELEASE", "u", "id"],
            &["RL.ADJUST", "u", "-1"],
            &["RL.ALL", "1", "u", "FIXED", "3", "1000"],
        ] {
            assert_eq!(error(con, args), usage_kind, "{who}: {args:?}");
        }
        let _: Vec<i64> = cmd("RL.TOKENBUCKET")
            .arg("b")
            .arg(3)
            .arg(1)
            .arg(1000)
            .query(con)
            .unwrap();
        let bucket_kind = "WRONGTYPE the key holds a tokenbucket limiter";
        assert_eq!(
            error(con, &["RL.USAGE.ADD", "b", "1", "1000", "3"]),
            bucket_kind,
            "{who}"
        );
        assert_eq!(error(con, &["RL.USAGE", "b"]), bucket_kind, "{who}");
        let () = cmd("SET").arg("s").arg("x").query(con).unwrap();
        let other = "WRONGTYPE Operation against a key holding the wrong kind of value";
        assert_eq!(error(con, &["RL.USAGE.ADD", "s", "1", "1000", "3"]), other);
        assert_eq!(error(con, &["RL.USAGE", "s"]), other, "{who}");
        let kind: String = cmd("TYPE").arg("u").query(con).unwrap();
        assert_eq!(kind, "redlimit0", "{who}");
        let deleted: i64 = cmd("RL.RESET").arg("u").arg("b").query(con).unwrap();
        assert_eq!(deleted, 2, "{who}");
        assert_eq!(usage(con, "u"), [], "{who}");
    }
}

#[test]
fn resp3_replies_are_the_resp2_arrays() {
    for server in servers() {
        let who = server.binary().name();
        let con2 = &mut server.connection();
        let client = redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
        let con3 = &mut client.get_connection().unwrap();
        let t0 = day_ahead();
        clock_at(con2, t0 + MINUTE);
        for con in [&mut *con2, &mut *con3] {
            let total: Value = cmd("RL.USAGE.ADD")
                .arg("u")
                .arg(5)
                .arg(HOUR)
                .arg(3)
                .query(con)
                .unwrap();
            assert!(matches!(total, Value::Int(_)), "{who}: {total:?}");
        }
        let resp2: Value = cmd("RL.USAGE").arg("u").query(con2).unwrap();
        let resp3: Value = cmd("RL.USAGE").arg("u").query(con3).unwrap();
        assert_eq!(resp3, resp2, "{who}");
        let expected = [t0 - 2 * HOUR, 0, t0 - HOUR, 0, t0, 10].map(|n| Value::Int(n as i64));
        assert_eq!(resp2, Value::Array(expected.to_vec()), "{who}");
        let empty: Value = cmd("RL.USAGE").arg("none").query(con3).unwrap();
        assert_eq!(empty, Value::Array(Vec::new()), "{who}");
    }
}

#[test]
fn a_counter_survives_debug_reload_exactly() {
    for server in servers() {
        let con = &mut server.connection();
        let who = server.binary().name();
        let t0 = day_ahead();
        for hour in 0..5 {
            clock_at(con, t0 + hour * HOUR + MINUTE);
            add(con, "u", 10 * (hour + 1), HOUR, 24);
        }
        let before = snapshot(con, "u").unwrap();
        let read = usage(con, "u");
        let () = cmd("DEBUG").arg("RELOAD").query(con).unwrap();
        assert_eq!(snapshot(con, "u"), Some(before), "{who}");
        assert_eq!(usage(con, "u"), read, "{who}");
        let bytes: i64 = cmd("MEMORY").arg("USAGE").arg("u").query(con).unwrap();
        assert!(bytes > 0, "{who}");
    }
}

#[test]
fn an_idle_counter_expires_by_itself() {
    for server in servers() {
        let con = &mut server.connection();
        let who = server.binary().name();
        // A ring of 0.4 s on the real clock.
        add(con, "short", 1, 200, 2);
        let expire_at = expire_time(con, "short");
        let bucket = real_now_ms() / 200 * 200;
        assert!(
            (bucket as i64 + 200..=bucket as i64 + 400).contains(&expire_at),
            "{who}: expires at {expire_at}, the ring of {bucket}"
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let exists: i64 = cmd("EXISTS").arg("short").query(con).unwrap();
            if exists == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{who}: still there after 5 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_replica_holds_the_primarys_counters_exactly() {
    for binary in available_servers() {
        let who = binary.name();
        let primary = ServerBuilder::new(&binary).module(module_path()).start();
        // The replica's clock is two hours ahead: a decision it re-ran would differ.
        let replica = ServerBuilder::new(&binary)
            .module(module_path())
            .module_args(["clock-offset-ms", "7200000"])
            .replica_of(&primary)
            .start();
        replica.wait_for_sync();
        let p = &mut primary.connection();
        let r = &mut replica.connection();
        let t0 = day_ahead();
        clock_at(p, t0 + MINUTE);
        add(p, "small", 5, HOUR, 24);
        add(p, "small", 6, HOUR, 24);
        // A full day of minutes with large amounts: past a few buckets its state is larger
        // than the call, which then travels as RL.REPLAY at its decision time.
        let mut pipe = redis::pipe();
        for minute in 0..1_440u64 {
            pipe.cmd("RL.REPLAY")
                .arg((t0 - DAY + (minute + 1) * MINUTE) * 1_000)
                .arg("RL.USAGE.ADD")
                .arg("day")
                .arg((1u64 << 40) + minute)
                .arg(MINUTE)
                .arg(1_440)
                .ignore();
        }
        let () = pipe.query(p).unwrap();
        let acked: i64 = cmd("WAIT").arg(1).arg(5_000).query(p).unwrap();
        assert_eq!(acked, 1, "{who}");
        for key in ["small", "day"] {
            let on_primary = snapshot(p, key).unwrap();
            assert_eq!(snapshot(r, key), Some(on_primary), "{who}: {key}");
        }
        let replays = redlimit_test_support::info_value(r, "commandstats", "cmdstat_rl.replay");
        assert!(replays.is_some(), "{who}: the full ring went as RL.REPLAY");
        let day = usage(p, "day");
        assert_eq!(day.len(), 1_440, "{who}");
        assert_eq!(day[1_438], (t0, (1 << 40) + 1_439), "{who}");
        assert_eq!(day[1_439], (t0 + MINUTE, 0), "{who}");
        for command in ["cmdstat_rl.usage", "cmdstat_rl.usage.add"] {
            let stats = redlimit_test_support::info_value(p, "commandstats", command);
            println!("{who}: {command}: {stats:?}");
        }
    }
}
