//! Bounded cost (issue 12): at every documented maximum — an exact log of 65,536 entries
//! (decided, peeked, adjusted), 1,000 leases with 256-byte ids, `RL.ALL` over 32 limits
//! on one such log or reserving over 32 token buckets — one call
//! takes at most 1 ms of server time and propagates at most 4 KiB, on every server.
//!
//! Server time is the command's own, from `INFO commandstats` (never wall time across
//! processes); propagated bytes are the growth of the AOF. The optimised module is
//! loaded (`cargo build --release -p redlimit-module`, or `$REDLIMIT_RELEASE_MODULE`):
//! a debug build is several times slower and says nothing about production.

use redis::{Connection, Value, cmd};
use redlimit_core::{
    Concurrency, Lease, Leases, Limiter, MAX_ALL_LIMITS, MAX_LEASE_ID_LEN, MAX_LEASES,
    MAX_SLIDING_LIMIT, SlidingLog, SlidingWindow,
};
use redlimit_test_support::{
    ServerBuilder, aof_size, available_servers, info_value, optimized_module_path,
};

/// The most server time one call may take, in microseconds.
const MOST_MICROS: u64 = 1_000;
/// The most bytes one call may propagate (to the AOF, and so to replicas).
const MOST_BYTES: i64 = 4 * 1024;
/// A window long enough that nothing leaves it during the test.
const WINDOW_MS: u64 = 1_000_000_000_000;

/// The server microseconds `command` took (its only call since the reset).
fn command_micros(con: &mut Connection, command: &str) -> u64 {
    let stats = info_value(con, "commandstats", &format!("cmdstat_{command}"))
        .unwrap_or_else(|| panic!("no commandstats for {command}"));
    stats
        .split(',')
        .find_map(|part| part.strip_prefix("usec="))
        .and_then(|usec| usec.parse().ok())
        .unwrap_or_else(|| panic!("cmdstat_{command}: {stats}"))
}

/// Runs one call and returns (its server time in µs, the bytes it propagated, its reply).
fn measure(con: &mut Connection, args: &[&[u8]]) -> (u64, i64, Value) {
    let _: () = cmd("CONFIG").arg("RESETSTAT").query(con).unwrap();
    let before = aof_size(con);
    let reply: Value = cmd(std::str::from_utf8(args[0]).unwrap())
        .arg(&args[1..])
        .query(con)
        .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(args[0])));
    let micros = command_micros(con, &String::from_utf8_lossy(args[0]).to_lowercase());
    (micros, aof_size(con) - before, reply)
}

fn now_ms(con: &mut Connection) -> u64 {
    let (seconds, micros): (u64, u64) = cmd("TIME").query(con).unwrap();
    seconds * 1_000 + micros / 1_000
}

/// An exact log of `entries` requests of cost 1, a second ago, under `limit`.
fn full_log(con: &mut Connection, entries: usize, limit: u64) -> Vec<u8> {
    let log = SlidingLog::from_parts(now_ms(con) - 1_000, [0u8, 1].repeat(entries)).unwrap();
    Limiter::Sliding(SlidingWindow::new(limit, WINDOW_MS).unwrap(), Box::new(log)).encode()
}

fn lease_id(i: usize) -> Vec<u8> {
    let mut id = format!("{i:08}").into_bytes();
    id.resize(MAX_LEASE_ID_LEN, b'x');
    id
}

/// `MAX_LEASES` leases with ids of `MAX_LEASE_ID_LEN` bytes, ending in half the window.
fn full_leases(con: &mut Connection) -> Vec<u8> {
    let expires_ms = now_ms(con) + WINDOW_MS / 2;
    let held = (0..MAX_LEASES as usize)
        .map(|i| Lease {
            expires_ms,
            id: lease_id(i).into(),
        })
        .collect();
    let policy = Concurrency::new(MAX_LEASES, WINDOW_MS).unwrap();
    Limiter::Concurrency(policy, Box::new(Leases::from_leases(held).unwrap())).encode()
}

#[test]
fn every_call_at_every_maximum_is_fast_and_propagates_little() {
    let module = optimized_module_path();
    let limit = MAX_SLIDING_LIMIT.to_string();
    let window = WINDOW_MS.to_string();
    let leases = MAX_LEASES.to_string();
    let numkeys = MAX_ALL_LIMITS.to_string();
    for binary in available_servers() {
        let who = binary.name();
        let server = ServerBuilder::new(&binary)
            .module(&module)
            .args(["--appendonly", "yes", "--appendfsync", "no"])
            .start();
        let con = &mut server.connection();
        let log = full_log(con, MAX_SLIDING_LIMIT as usize - 1, MAX_SLIDING_LIMIT);
        for key in ["log", "log:all"] {
            let _: () = cmd("RL.SETSTATE").arg(key).arg(&log).query(con).unwrap();
        }
        let _: () = cmd("RL.SETSTATE")
            .arg("leases")
            .arg(full_leases(con))
            .query(con)
            .unwrap();
        let sliding: [&[u8]; 4] = [b"RL.SLIDING", b"log", limit.as_bytes(), window.as_bytes()];
        let mut all: Vec<&[u8]> = vec![b"RL.ALL", numkeys.as_bytes()];
        all.extend(std::iter::repeat_n(
            &b"log:all"[..],
            MAX_ALL_LIMITS as usize,
        ));
        for _ in 0..MAX_ALL_LIMITS {
            all.extend([&b"SLIDING"[..], limit.as_bytes(), window.as_bytes()]);
        }
        let buckets: Vec<String> = (0..MAX_ALL_LIMITS)
            .map(|i| format!("bucket:{i:02}"))
            .collect();
        let mut reservation: Vec<&[u8]> = vec![b"RL.ALL", numkeys.as_bytes()];
        reservation.extend(buckets.iter().map(|key| key.as_bytes()));
        for _ in 0..MAX_ALL_LIMITS {
            reservation.extend([&b"TOKENBUCKET"[..], b"100", b"1", b"1000"]);
        }
        reservation.push(b"COSTS");
        reservation.extend(std::iter::repeat_n(&b"100"[..], MAX_ALL_LIMITS as usize));
        reservation.extend([&b"MAXWAIT"[..], b"200000"]);
        let renewed = lease_id(7);
        let calls: Vec<(&str, Vec<&[u8]>)> = vec![
            (
                "an allowed call on a log one short of full",
                sliding.to_vec(),
            ),
            ("a denied call on a full log", sliding.to_vec()),
            ("a peek on a full log", [&sliding[..], &[b"PEEK"]].concat()),
            ("RL.STATUS of a full log", vec![b"RL.STATUS", b"log"]),
            ("RL.ALL naming one full log 32 times", all.clone()),
            (
                "RL.ADJUST refunding the oldest entries of a full log",
                vec![b"RL.ADJUST", b"log", b"-100", b"SINCE", b"0"],
            ),
            (
                "RL.ALL reserving over 32 token buckets with COSTS and MAXWAIT",
                reservation.clone(),
            ),
            (
                "a renewal among the most leases",
                vec![
                    b"RL.ACQUIRE",
                    b"leases",
                    leases.as_bytes(),
                    window.as_bytes(),
                    &renewed,
                ],
            ),
            (
                "a new holder refused by the most leases",
                vec![
                    b"RL.ACQUIRE",
                    b"leases",
                    leases.as_bytes(),
                    window.as_bytes(),
                    b"new",
                ],
            ),
            (
                "RL.STATUS of the most leases",
                vec![b"RL.STATUS", b"leases"],
            ),
            (
                "a release among the most leases",
                vec![b"RL.RELEASE", b"leases", &renewed],
            ),
            // Constant-size states, for the table in docs/security.md.
            (
                "a token bucket",
                vec![
                    b"RL.TOKENBUCKET",
                    b"tb",
                    b"100",
                    b"1",
                    b"1000",
                    b"MAXWAIT",
                    b"10000",
                ],
            ),
            (
                "a throttle",
                vec![b"RL.THROTTLE", b"cell", b"15", b"30", b"60"],
            ),
            (
                "a fixed window",
                vec![b"RL.FIXED", b"fixed", b"100", b"60000"],
            ),
            (
                "an APPROX window at its largest limit",
                vec![
                    b"RL.SLIDING",
                    b"approx",
                    b"1099511627776",
                    b"60000",
                    b"APPROX",
                ],
            ),
            ("RL.RESET of a full log", vec![b"RL.RESET", b"log"]),
        ];
        let mut report = Vec::new();
        let mut allowed = Vec::new();
        for (what, args) in &calls {
            let (micros, bytes, reply) = measure(con, args);
            assert!(
                !matches!(reply, Value::ServerError(_)),
                "{who}: {what}: {reply:?}"
            );
            report.push(format!("{what}: {micros} µs, {bytes} B"));
            allowed.push(match &reply {
                Value::Array(items) => items.first().cloned(),
                _ => None,
            });
            assert!(
                micros <= MOST_MICROS,
                "{who}: {what} took {micros} µs of server time (at most {MOST_MICROS})"
            );
            assert!(
                bytes <= MOST_BYTES,
                "{who}: {what} propagated {bytes} bytes (at most {MOST_BYTES})"
            );
        }
        // RL.SETSTATE propagates the state it was sent (its own size, as any write of a
        // value does); its time is the decoder's, bounded like a call's.
        let (micros, bytes, _) = measure(con, &[b"RL.SETSTATE", b"log:copy", &log]);
        report.push(format!("RL.SETSTATE of a full log: {micros} µs, {bytes} B"));
        assert!(micros <= MOST_MICROS, "{who}: RL.SETSTATE took {micros} µs");
        eprintln!("{who}: {}", report.join("; "));
        // The keys really were at their maxima: the log filled up with the first call,
        // the renewal fitted, the new holder did not.
        let int = |n| Some(Value::Int(n));
        assert_eq!(allowed[0..2], [int(1), int(0)], "{who}: the log");
        assert_eq!(allowed[7..9], [int(1), int(0)], "{who}: leases");
    }
}
