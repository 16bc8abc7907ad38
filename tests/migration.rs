//! Live migration from redis-cell: `RL.THROTTLE` adopts a key that still holds
//! redis-cell's state — a Redis string with the TAT in decimal nanoseconds since the
//! epoch, expiring `(TAT - now)` truncated to whole ms later — and answers what
//! `CL.THROTTLE` would have answered on it. Strings that are not such a TAT stay
//! `WRONGTYPE`.
//!
//! The expected replies come from redis-cell's arithmetic, written out in [`cell_reply`].
//! A one-off comparison against a real redis-cell build is described in
//! `docs/migrating.md`.

mod common;

use common::{decide, error, servers, set_clock};
use redis::{Connection, cmd};
use redlimit_core::{Limiter, Throttle, ThrottleState};
use redlimit_test_support::{ServerBuilder, available_servers, module_path, stored_state};

const SECOND_NS: u64 = 1_000_000_000;
const WRONG_TYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

/// `RL.THROTTLE <key> 4 1 1`: bursts of 5, one per second (interval 1 s, tolerance 5 s).
const POLICY: [&str; 3] = ["4", "1", "1"];

fn throttle(con: &mut Connection, key: &str, quantity: u64) -> [i64; 5] {
    let quantity = quantity.to_string();
    decide(
        con,
        &[
            "RL.THROTTLE",
            key,
            POLICY[0],
            POLICY[1],
            POLICY[2],
            &quantity,
        ],
    )
}

/// The server's clock in ns (`TIME`): the clock redis-cell reads, and ours at offset 0.
fn server_ns(con: &mut Connection) -> u64 {
    let (seconds, micros): (u64, u64) = cmd("TIME").query(con).unwrap();
    seconds * SECOND_NS + micros * 1_000
}

/// Writes what `CL.THROTTLE` leaves in `key`: the TAT `ahead_ns` after now as a decimal
/// string, expiring after `ahead_ns` truncated to whole ms (`SET key tat PX ms`).
/// Returns the TAT.
fn write_cell_state(con: &mut Connection, key: &str, ahead_ns: u64) -> u64 {
    let tat = server_ns(con) + ahead_ns;
    let () = cmd("SET")
        .arg(key)
        .arg(tat.to_string())
        .arg("PX")
        .arg(ahead_ns / 1_000_000)
        .query(con)
        .unwrap();
    tat
}

/// What redis-cell's `CL.THROTTLE key max_burst count period quantity` answers when its
/// key's TAT lies `ahead_ns` after now (negative: in the past, or no key), as its
/// `cell::RateLimiter::rate_limit` and reply code compute it.
fn cell_reply(ahead_ns: i128, interval_ns: i128, max_burst: i128, quantity: i128) -> [i64; 5] {
    let tolerance = interval_ns * (max_burst + 1);
    let increment = interval_ns * quantity;
    let tat = ahead_ns.max(0);
    let new_tat = tat + increment;
    let allow_at = new_tat - tolerance;
    let (limited, retry_after, ttl) = if allow_at > 0 {
        let retry = if increment <= tolerance {
            allow_at
        } else {
            -(SECOND_NS as i128)
        };
        (1, retry, tat)
    } else {
        (0, -(SECOND_NS as i128), new_tat)
    };
    let next = tolerance - ttl;
    let remaining = if next > -interval_ns {
        ((next / 1_000) as f64 / (interval_ns / 1_000) as f64) as i64
    } else {
        0
    };
    // Whole seconds (truncated), plus one when a whole millisecond is left over.
    let seconds = |ns: i128| {
        (ns / SECOND_NS as i128 + i128::from(ns % SECOND_NS as i128 >= 1_000_000)) as i64
    };
    [
        limited,
        (max_burst + 1) as i64,
        remaining,
        seconds(retry_after),
        seconds(ttl),
    ]
}

/// The stored throttle's TAT.
fn stored_tat(con: &mut Connection, key: &str) -> u64 {
    let state = stored_state(con, key).expect("the key holds a redlimit state");
    match Limiter::decode(&state).unwrap() {
        Limiter::Throttle(policy, ThrottleState { tat_ns }) => {
            assert_eq!(policy, Throttle::new(4, 1, 1).unwrap());
            tat_ns
        }
        other => panic!("not a throttle: {other:?}"),
    }
}

fn key_type(con: &mut Connection, key: &str) -> String {
    cmd("TYPE").arg(key).query(con).unwrap()
}

fn value_and_expiry(con: &mut Connection, key: &str) -> (Option<String>, i64) {
    let value: Option<String> = cmd("GET").arg(key).query(con).unwrap();
    let expire: i64 = cmd("PEXPIRETIME").arg(key).query(con).unwrap();
    (value, expire)
}

#[test]
fn a_redis_cell_key_is_adopted_with_redis_cells_replies() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 0);
        // Two requests taken under redis-cell, 0.5 s ago: the TAT is 1.5 s ahead.
        let tat = write_cell_state(con, "cell", 1_500_000_000);
        let expected = cell_reply(1_500_000_000, SECOND_NS.into(), 4, 1);
        assert_eq!(expected, [0, 5, 2, -1, 3], "the model");
        assert_eq!(throttle(con, "cell", 1), expected, "{name}: adopted");
        // Now our own throttle, its TAT exactly one interval further.
        assert_eq!(key_type(con, "cell"), "redlimit0", "{name}");
        assert_eq!(stored_tat(con, "cell"), tat + SECOND_NS, "{name}");
        let expire_at: i64 = cmd("PEXPIRETIME").arg("cell").query(con).unwrap();
        assert_eq!(
            expire_at as u64,
            (tat + SECOND_NS).div_ceil(1_000_000),
            "{name}: expires at the TAT, rounded up to the ms"
        );
        // And it goes on exactly as redis-cell would have.
        assert_eq!(
            throttle(con, "cell", 1),
            cell_reply(2_500_000_000, SECOND_NS.into(), 4, 1),
            "{name}"
        );
        assert_eq!(
            throttle(con, "cell", 1),
            cell_reply(3_500_000_000, SECOND_NS.into(), 4, 1),
            "{name}"
        );
        assert_eq!(throttle(con, "cell", 1), [1, 5, 0, 1, 5], "{name}: limited");
        assert_eq!(
            throttle(con, "cell", 1),
            cell_reply(4_500_000_000, SECOND_NS.into(), 4, 1),
            "{name}"
        );
        assert_eq!(stored_tat(con, "cell"), tat + 3 * SECOND_NS, "{name}");
    }
}

#[test]
fn denied_and_zero_quantity_calls_leave_redis_cells_string_as_it_was() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 0);
        // A burst used up under redis-cell: the TAT is 4.5 s ahead of a 5 s tolerance.
        write_cell_state(con, "full", 4_500_000_000);
        let before = value_and_expiry(con, "full");
        let expected = cell_reply(4_500_000_000, SECOND_NS.into(), 4, 1);
        assert_eq!(expected, [1, 5, 0, 1, 5], "the model");
        assert_eq!(throttle(con, "full", 1), expected, "{name}: denied");
        assert_eq!(
            throttle(con, "full", 0),
            cell_reply(4_500_000_000, SECOND_NS.into(), 4, 0),
            "{name}: quantity 0"
        );
        assert_eq!(
            throttle(con, "full", 9),
            [1, 5, 0, -1, 5],
            "{name}: more than the burst can ever take"
        );
        assert_eq!(key_type(con, "full"), "string", "{name}");
        assert_eq!(value_and_expiry(con, "full"), before, "{name}: unchanged");
    }
}

#[test]
fn a_redis_cell_tat_already_past_on_the_module_clock_is_an_absent_key() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        write_cell_state(con, "stale", 3_500_000_000);
        // The test clock runs 10 s ahead: the server still holds the string, but its
        // TAT is past, as if redis-cell's key had expired.
        set_clock(con, 10_000);
        assert_eq!(throttle(con, "stale", 1), [0, 5, 4, -1, 1], "{name}: fresh");
        assert_eq!(key_type(con, "stale"), "redlimit0", "{name}");
    }
}

#[test]
fn strings_that_are_not_a_redis_cell_tat_stay_wrongtype() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 0);
        let tat = server_ns(con) + 2 * SECOND_NS;
        let with_ttl = |value: String| (value, Some(2_000u64));
        let cases = [
            // A fixed-window counter with its expiry: an integer, far from a TAT.
            with_ttl("17".into()),
            with_ttl("hello".into()),
            with_ttl(format!("+{tat}")),
            with_ttl(format!("0{tat}")),
            with_ttl(format!("{tat} ")),
            with_ttl(format!("{tat}.0")),
            with_ttl(format!("-{tat}")),
            with_ttl("18446744073709551616".into()),
            with_ttl(String::new()),
            // redis-cell always sets an expiry.
            (tat.to_string(), None),
            // An expiry an hour away from the TAT.
            (tat.to_string(), Some(3_600_000)),
        ];
        for (value, px) in cases {
            let mut set = cmd("SET");
            set.arg("s").arg(&value);
            if let Some(px) = px {
                set.arg("PX").arg(px);
            }
            let () = set.query(con).unwrap();
            let before = value_and_expiry(con, "s");
            let reply = error(con, &["RL.THROTTLE", "s", "4", "1", "1"]);
            assert_eq!(reply, WRONG_TYPE, "{name}: {value:?} PX {px:?}");
            assert_eq!(
                value_and_expiry(con, "s"),
                before,
                "{name}: {value:?} unchanged"
            );
        }
        let () = cmd("RPUSH")
            .arg("list")
            .arg(tat.to_string())
            .query(con)
            .unwrap();
        assert_eq!(
            error(con, &["RL.THROTTLE", "list", "4", "1", "1"]),
            WRONG_TYPE,
            "{name}"
        );
    }
}

#[test]
fn an_adoption_reaches_the_replica_as_the_resulting_state() {
    for binary in available_servers() {
        let name = binary.name();
        let primary = ServerBuilder::new(&binary).module(module_path()).start();
        let replica = ServerBuilder::new(&binary)
            .module(module_path())
            .replica_of(&primary)
            .start();
        replica.wait_for_sync();
        let (p, r) = (&mut primary.connection(), &mut replica.connection());
        let tat = write_cell_state(p, "cell", 1_500_000_000);
        assert_eq!(throttle(p, "cell", 1)[0], 0, "{name}");
        let acked: i64 = cmd("WAIT").arg(1).arg(5_000).query(p).unwrap();
        assert_eq!(acked, 1, "{name}: the replica acknowledged");
        assert_eq!(key_type(r, "cell"), "redlimit0", "{name}: replica");
        assert_eq!(stored_tat(r, "cell"), tat + SECOND_NS, "{name}: replica");
        assert_eq!(stored_state(r, "cell"), stored_state(p, "cell"), "{name}");
        let expiry =
            |con: &mut Connection| cmd("PEXPIRETIME").arg("cell").query::<i64>(con).unwrap();
        assert_eq!(expiry(r), expiry(p), "{name}: same absolute expiry");
    }
}
