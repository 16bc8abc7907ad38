//! Many clients hitting the same keys at once: the admitted total equals exactly what the
//! definition allows, for every algorithm, on every server binary.
//!
//! Policies are chosen so that the wall-clock time the burst takes cannot change the
//! answer (refills of one per HOUR, windows of an HOUR, aligned with the test clock), so
//! the reference is a plain number: the limit.

mod common;

use common::{servers, set_clock};
use redis::{Value, cmd};
use std::thread;

const CLIENTS: usize = 8;
const REQUESTS_PER_CLIENT: usize = 60;
const HOUR: &str = "3600000";

/// Runs `args` (with `{id}` replaced by a per-request id) from `CLIENTS` connections at
/// once and returns how many replies were "allowed".
fn burst(
    server: &redlimit_test_support::Server,
    args: &[&str],
    allowed: fn(&Value) -> bool,
) -> usize {
    thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let mut con = server.connection();
                scope.spawn(move || {
                    let mut admitted = 0;
                    for request in 0..REQUESTS_PER_CLIENT {
                        let id = format!("{client}-{request}");
                        let args: Vec<String> =
                            args.iter().map(|a| a.replace("{id}", &id)).collect();
                        let reply: Value = cmd(&args[0]).arg(&args[1..]).query(&mut con).unwrap();
                        admitted += usize::from(allowed(&reply));
                    }
                    admitted
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

/// A case: its name, the command, how many requests the definition admits, and how to
/// read "allowed" from a reply.
type Case = (
    &'static str,
    &'static [&'static str],
    usize,
    fn(&Value) -> bool,
);

fn first_is(value: i64) -> fn(&Value) -> bool {
    match value {
        1 => |reply| matches!(reply, Value::Array(items) if items.first() == Some(&Value::Int(1))),
        _ => |reply| matches!(reply, Value::Array(items) if items.first() == Some(&Value::Int(0))),
    }
}

#[test]
fn concurrent_clients_get_exactly_the_limit() {
    let cases: [Case; 7] = [
        (
            "tokenbucket",
            &["RL.TOKENBUCKET", "tb", "100", "1", HOUR],
            100,
            first_is(1),
        ),
        (
            "throttle",
            &["RL.THROTTLE", "th", "99", "1", "3600"],
            100,
            first_is(0),
        ),
        (
            "sliding",
            &["RL.SLIDING", "sl", "100", HOUR],
            100,
            first_is(1),
        ),
        (
            "sliding approx",
            &["RL.SLIDING", "sa", "100", HOUR, "APPROX"],
            100,
            first_is(1),
        ),
        ("fixed", &["RL.FIXED", "fx", "100", HOUR], 100, first_is(1)),
        (
            "all",
            &[
                "RL.ALL", "2", "{a}m", "{a}h", "SLIDING", "70", HOUR, "FIXED", "100", HOUR,
            ],
            70,
            first_is(1),
        ),
        (
            "leases",
            &["RL.ACQUIRE", "ls", "25", HOUR, "{id}"],
            25,
            first_is(1),
        ),
    ];
    for server in servers() {
        let con = &mut server.connection();
        // Put "now" 100 ms into an hour-long window so no window ends during the burst.
        let (seconds, _): (u64, u64) = cmd("TIME").query(con).unwrap();
        set_clock(con, 3_600_000 - (seconds * 1_000) % 3_600_000 + 100);
        for (name, args, expected, allowed) in &cases {
            let admitted = burst(&server, args, *allowed);
            assert_eq!(admitted, *expected, "{}: {name}", server.binary().name());
        }
        let hour_key: Vec<i64> = cmd("RL.FIXED")
            .arg("{a}h")
            .arg(100)
            .arg(HOUR)
            .arg("PEEK")
            .query(con)
            .unwrap();
        assert_eq!(
            hour_key[2],
            29,
            "{}: RL.ALL counted 70 on the hour key, 1 peeked",
            server.binary().name()
        );
    }
}
