//! The command contract of `../shared/spec/commands.md`, checked on every server binary.
//!
//! Time moves with `CONFIG SET redlimit.clock-offset-ms`, never with sleeps.

mod common;

use common::{assert_near, decide, error, servers, set_clock};
use redis::{Connection, Value, cmd};
use redlimit_test_support::Flavor;

const BUCKET: [&str; 4] = ["RL.TOKENBUCKET", "b", "3", "1"];

fn bucket(con: &mut Connection, options: &[&str]) -> [i64; 5] {
    let mut args = BUCKET.to_vec();
    args.push("1000");
    args.extend_from_slice(options);
    decide(con, &args)
}

#[test]
fn a_token_bucket_drains_then_refills_on_the_test_clock() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 1_000_000);
        assert_near(bucket(con, &[]), [1, 3, 2, 0, 1_000], name);
        assert_near(bucket(con, &[]), [1, 3, 1, 0, 2_000], name);
        assert_near(bucket(con, &[]), [1, 3, 0, 0, 3_000], name);
        let denied = bucket(con, &[]);
        assert_eq!(denied[..3], [0, 3, 0], "{name}");
        assert!(
            (900..=1_000).contains(&denied[3]),
            "{name}: retry_after {}",
            denied[3]
        );
        set_clock(con, 1_000_000 + denied[3] as u64);
        assert_eq!(bucket(con, &[])[0], 1, "{name}: allowed after retry_after");
        set_clock(con, 1_010_000);
        assert_eq!(
            bucket(con, &["PEEK"]),
            [1, 3, 2, 0, 1_000],
            "{name}: full after 10 s"
        );
    }
}

#[test]
fn denied_requests_and_peeks_change_nothing() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 5_000_000);
        bucket(con, &["COST", "3"]);
        let digest: Value = cmd("DEBUG")
            .arg("DIGEST-VALUE")
            .arg("b")
            .query(con)
            .unwrap();
        let expire: i64 = cmd("PEXPIRETIME").arg("b").query(con).unwrap();
        for options in [
            &["COST", "1"][..],
            &["PEEK"],
            &["COST", "0"],
            &["COST", "4"],
            &["MAXWAIT", "10"],
        ] {
            assert_eq!(
                bucket(con, options)[0],
                i64::from(options == ["COST", "0"]),
                "{name}: {options:?}"
            );
            assert_eq!(
                cmd("DEBUG")
                    .arg("DIGEST-VALUE")
                    .arg("b")
                    .query::<Value>(con)
                    .unwrap(),
                digest,
                "{name}: {options:?}"
            );
            assert_eq!(
                cmd("PEXPIRETIME").arg("b").query::<i64>(con).unwrap(),
                expire,
                "{name}: {options:?}"
            );
        }
        assert_eq!(
            decide(con, &["RL.TOKENBUCKET", "fresh", "3", "1", "1000", "PEEK"]),
            [1, 3, 2, 0, 1_000],
            "{name}"
        );
        assert_eq!(
            decide(
                con,
                &["RL.TOKENBUCKET", "fresh", "3", "1", "1000", "COST", "0"]
            ),
            [1, 3, 3, 0, 0],
            "{name}"
        );
        assert_eq!(
            cmd("EXISTS").arg("fresh").query::<i64>(con).unwrap(),
            0,
            "{name}: nothing written"
        );
    }
}

#[test]
fn cost_above_capacity_can_never_succeed() {
    for server in servers() {
        let con = &mut server.connection();
        assert_eq!(
            bucket(con, &["COST", "4"]),
            [0, 3, 3, -1, 0],
            "{}",
            server.binary().name()
        );
    }
}

#[test]
fn max_wait_reserves_future_tokens_in_arrival_order() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 2_000_000);
        let reserve = |con: &mut Connection| {
            decide(
                con,
                &["RL.TOKENBUCKET", "m", "1", "1", "1000", "MAXWAIT", "1500"],
            )
        };
        assert_eq!(reserve(con), [1, 1, 0, 0, 1_000], "{name}");
        let second = reserve(con);
        assert_eq!(second[..3], [1, 1, 0], "{name}: admitted by borrowing");
        assert!(
            (900..=1_000).contains(&second[3]),
            "{name}: must wait {}",
            second[3]
        );
        let third = reserve(con);
        assert_eq!(third[..3], [0, 1, 0], "{name}: would wait 2 s > 1.5 s");
        assert!(
            (400..=500).contains(&third[3]),
            "{name}: retry in {}",
            third[3]
        );
    }
}

#[test]
fn a_clock_moving_back_grants_nothing() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 9_000_000);
        bucket(con, &["COST", "3"]);
        set_clock(con, 4_000_000);
        let denied = bucket(con, &[]);
        assert_eq!(denied[..3], [0, 3, 0], "{name}");
        assert!(denied[3] >= 999, "{name}: retry_after {}", denied[3]);
        set_clock(con, 0);
        assert_eq!(bucket(con, &[])[0], 0, "{name}");
    }
}

#[test]
fn a_new_policy_keeps_the_usage() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 3_000_000);
        decide(
            con,
            &["RL.TOKENBUCKET", "p", "10", "1", "60000", "COST", "8"],
        );
        let upgraded = decide(con, &["RL.TOKENBUCKET", "p", "100", "1", "60000"]);
        assert_eq!(upgraded[..3], [1, 100, 91], "{name}");
        let downgraded = decide(con, &["RL.TOKENBUCKET", "p", "5", "1", "60000"]);
        assert_eq!(downgraded[..3], [0, 5, 0], "{name}");
    }
}

#[test]
fn idle_keys_expire_when_full_again() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 0);
        let reply = decide(
            con,
            &["RL.TOKENBUCKET", "e", "10", "1", "1000", "COST", "4"],
        );
        let expire_at: i64 = cmd("PEXPIRETIME").arg("e").query(con).unwrap();
        let (seconds, micros): (i64, i64) = cmd("TIME").query(con).unwrap();
        let now_ms = seconds * 1_000 + micros / 1_000;
        assert!(
            (expire_at - now_ms - reply[4]).abs() <= 1_000,
            "{name}: expires at full, {} ms",
            expire_at - now_ms
        );
        // A bucket that refills in 20 ms disappears by itself.
        decide(con, &["RL.TOKENBUCKET", "short", "1", "1", "20"]);
        let gone = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            cmd("EXISTS").arg("short").query::<i64>(con).unwrap() == 0
        });
        assert!(gone, "{name}: the key should expire once full");
    }
}

#[test]
fn throttle_answers_like_redis_cell() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 7_000_000);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for _ in 0..17 {
            pipe.cmd("RL.THROTTLE")
                .arg("user123")
                .arg(15)
                .arg(30)
                .arg(60);
        }
        let replies: Vec<Vec<i64>> = pipe.query(con).unwrap();
        assert_eq!(replies[0], [0, 16, 15, -1, 2], "{name}");
        assert_eq!(replies[15], [0, 16, 0, -1, 32], "{name}");
        assert_eq!(replies[16], [1, 16, 0, 2, 32], "{name}");
        set_clock(con, 7_002_000);
        assert_eq!(
            decide(con, &["RL.THROTTLE", "user123", "15", "30", "60"])[..3],
            [0, 16, 0],
            "{name}"
        );
        assert_eq!(
            decide(con, &["RL.THROTTLE", "q", "4", "1", "1", "6"]),
            [1, 5, 5, -1, 0],
            "{name}: quantity > burst"
        );
    }
}

#[test]
fn time_is_frozen_inside_multi_where_the_server_offers_it() {
    for server in servers() {
        if server.binary().flavor == Flavor::Redis70 {
            continue; // Redis 7.0 has no cached command time: the wall clock moves.
        }
        let con = &mut server.connection();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for _ in 0..3 {
            pipe.cmd("RL.TOKENBUCKET")
                .arg("frozen")
                .arg(10)
                .arg(1)
                .arg(1000);
            pipe.cmd("DEBUG").arg("SLEEP").arg("0.01").ignore();
        }
        let replies: Vec<[i64; 5]> = pipe.query(con).unwrap();
        let resets: Vec<i64> = replies.iter().map(|r| r[4]).collect();
        assert_eq!(resets, [1_000, 2_000, 3_000], "{}", server.binary().name());
    }
}

#[test]
fn keys_of_another_type_or_algorithm_are_wrongtype() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        let _: () = cmd("SET").arg("s").arg("x").query(con).unwrap();
        decide(con, &["RL.THROTTLE", "t", "1", "1", "1"]);
        assert!(
            error(con, &["RL.TOKENBUCKET", "s", "1", "1", "1"]).starts_with("WRONGTYPE"),
            "{name}"
        );
        assert_eq!(
            error(con, &["RL.TOKENBUCKET", "t", "1", "1", "1"]),
            "WRONGTYPE the key holds a throttle limiter",
            "{name}"
        );
        assert!(
            error(con, &["RL.STATUS", "s"]).starts_with("WRONGTYPE"),
            "{name}"
        );
        assert!(
            error(con, &["RL.RESET", "t", "s"]).starts_with("WRONGTYPE"),
            "{name}"
        );
        assert_eq!(
            cmd("EXISTS").arg("t").query::<i64>(con).unwrap(),
            1,
            "{name}: RESET deleted nothing"
        );
        assert_eq!(
            cmd("RL.RESET")
                .arg("t")
                .arg("missing")
                .arg("t")
                .query::<i64>(con)
                .unwrap(),
            1,
            "{name}"
        );
        assert_eq!(
            cmd("TYPE").arg("s").query::<String>(con).unwrap(),
            "string",
            "{name}"
        );
    }
}

#[test]
fn bad_arguments_are_named_errors() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["RL.TOKENBUCKET", "k", "3", "1"],
            "ERR wrong number of arguments for 'rl.tokenbucket' command",
        ),
        (
            &["RL.TOKENBUCKET", "k", "0", "1", "1"],
            "ERR capacity must be a positive integer",
        ),
        (
            &["RL.TOKENBUCKET", "k", "x", "1", "1"],
            "ERR capacity must be a positive integer",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1", "-1", "1"],
            "ERR refill_tokens must be a positive integer",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1", "1", "1.5"],
            "ERR refill_ms must be a positive integer",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1", "1", "99999999999999999999"],
            "ERR refill_ms must be at most 10000000000000",
        ),
        (
            &["RL.TOKENBUCKET", "k", "18446744073709551615", "1", "1"],
            "ERR capacity must be at most 4611686018427387 when refill_ms is 1",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1", "1", "1", "COST"],
            "ERR syntax error: COST needs a value (COST n)",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1", "1", "1", "COST", "-1"],
            "ERR COST must be a non-negative integer",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1", "1", "1", "PEEK", "peek"],
            "ERR syntax error: PEEK given twice",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1", "1", "1", "FAST"],
            "ERR syntax error near 'FAST'",
        ),
        (
            &[
                "RL.TOKENBUCKET",
                "k",
                "1",
                "1",
                "1",
                "MAXWAIT",
                "18446744073709551615",
            ],
            "ERR MAXWAIT must be at most 10000000000000",
        ),
        (
            &["RL.THROTTLE", "k", "1", "1"],
            "ERR wrong number of arguments for 'rl.throttle' command",
        ),
        (
            &["RL.THROTTLE", "k", "1", "1", "1", "1", "1"],
            "ERR wrong number of arguments for 'rl.throttle' command",
        ),
        (
            &["RL.THROTTLE", "k", "-1", "1", "1"],
            "ERR max_burst must be a non-negative integer",
        ),
        (
            &["RL.THROTTLE", "k", "1", "0", "1"],
            "ERR count_per_period must be a positive integer",
        ),
        (
            &["RL.THROTTLE", "k", "1", "1", "0"],
            "ERR period_s must be a positive integer",
        ),
        (
            &["RL.THROTTLE", "k", "1", "1", "1", "-2"],
            "ERR quantity must be a non-negative integer",
        ),
        (
            &["RL.THROTTLE", "k", "1", "2000000000", "1"],
            "ERR count_per_period must be at most 1000000000 (one per nanosecond)",
        ),
        (
            &["RL.RESET"],
            "ERR wrong number of arguments for 'rl.reset' command",
        ),
        (
            &["RL.STATUS", "a", "b"],
            "ERR wrong number of arguments for 'rl.status' command",
        ),
        (
            &["RL.SETSTATE", "k", "garbage"],
            "ERR state must be a redlimit state (unknown encoding version)",
        ),
    ];
    for server in servers() {
        let con = &mut server.connection();
        for (args, expected) in cases {
            assert_eq!(
                error(con, args).to_lowercase(),
                expected.to_lowercase(),
                "{}: {args:?}",
                server.binary().name()
            );
        }
        assert!(
            error(con, &["CONFIG", "SET", "redlimit.clock-offset-ms", "-1"]).starts_with("ERR")
        );
        assert_eq!(
            cmd("DBSIZE").query::<i64>(con).unwrap(),
            0,
            "{}: no error wrote a key",
            server.binary().name()
        );
    }
}

#[test]
fn options_are_case_insensitive_and_keys_binary_safe() {
    for server in servers() {
        let con = &mut server.connection();
        let key = b"\xff\x00\xfe key";
        let reply: Vec<i64> = cmd("rl.TokenBucket")
            .arg(&key[..])
            .arg(5)
            .arg(1)
            .arg(1000)
            .arg("cost")
            .arg(2)
            .arg("maxWait")
            .arg(0)
            .query(con)
            .unwrap();
        assert_eq!(reply, [1, 5, 3, 0, 2_000], "{}", server.binary().name());
        assert_eq!(cmd("EXISTS").arg(&key[..]).query::<i64>(con).unwrap(), 1);
    }
}

#[test]
fn resp3_decisions_are_the_same_flat_arrays_and_status_a_map() {
    for server in servers() {
        let name = server.binary().name();
        let client = redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
        let con = &mut client.get_connection().unwrap();
        set_clock(con, 1_000_000);
        // Positional client code must read `allowed` first, as an integer, under RESP3
        // too: a map would hand it the truthy string "allowed".
        for expected in [
            [1, 3, 2, 0, 1_000],
            [1, 3, 1, 0, 2_000],
            [1, 3, 0, 0, 3_000],
        ] {
            let reply: Value = cmd("RL.TOKENBUCKET")
                .arg("r")
                .arg(3)
                .arg(1)
                .arg(1000)
                .query(con)
                .unwrap();
            let Value::Array(items) = &reply else {
                panic!("{name}: {reply:?}")
            };
            let fields: Vec<i64> = items
                .iter()
                .map(|item| match item {
                    Value::Int(n) => *n,
                    other => panic!("{name}: not an integer: {other:?}"),
                })
                .collect();
            assert_eq!(fields[..3], expected[..3], "{name}");
        }
        let denied: Value = cmd("RL.TOKENBUCKET")
            .arg("r")
            .arg(3)
            .arg(1)
            .arg(1000)
            .query(con)
            .unwrap();
        let Value::Array(items) = &denied else {
            panic!("{name}: {denied:?}")
        };
        assert_eq!(items[0], Value::Int(0), "{name}: denied reads as 0");
        for command in [
            &["RL.SLIDING", "s", "1", "1000"][..],
            &["RL.FIXED", "f", "1", "1000"],
            &["RL.ACQUIRE", "l", "1", "1000", "id"],
            &["RL.THROTTLE", "t", "0", "1", "1"],
        ] {
            let reply: Value = cmd(command[0]).arg(&command[1..]).query(con).unwrap();
            let Value::Array(items) = &reply else {
                panic!("{name}: {command:?}: {reply:?}")
            };
            assert_eq!(items.len(), 5, "{name}: {command:?}");
            assert!(
                items.iter().all(|item| matches!(item, Value::Int(_))),
                "{name}: {command:?}: {reply:?}"
            );
        }
        let all: Value = cmd("RL.ALL")
            .arg(2)
            .arg("{a}1")
            .arg("{a}2")
            .arg("SLIDING")
            .arg(1)
            .arg(1000)
            .arg("FIXED")
            .arg(5)
            .arg(1000)
            .query(con)
            .unwrap();
        let Value::Array(items) = &all else {
            panic!("{name}: {all:?}")
        };
        assert_eq!(
            items[0],
            Value::Int(1),
            "{name}: RL.ALL's allowed is an integer"
        );
        assert!(
            matches!(&items[1], Value::Array(inner) if inner.len() == 5),
            "{name}: {all:?}"
        );
        let status: Value = cmd("RL.STATUS").arg("r").query(con).unwrap();
        let Value::Map(fields) = status else {
            panic!("{name}: {status:?}")
        };
        let names: Vec<String> = fields
            .iter()
            .map(|(k, _)| redis::from_redis_value(k).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "algorithm",
                "capacity",
                "refill_tokens",
                "refill_ms",
                "allowed",
                "limit",
                "remaining",
                "retry_after_ms",
                "reset_after_ms"
            ],
            "{name}"
        );
        assert_eq!(
            fields[0].1,
            Value::BulkString(b"tokenbucket".to_vec()),
            "{name}"
        );
        assert_eq!(
            fields[4].1,
            Value::Boolean(false),
            "{name}: the bucket is empty"
        );
        assert_eq!(
            cmd("RL.STATUS").arg("none").query::<Value>(con).unwrap(),
            Value::Nil,
            "{name}"
        );
    }
}

#[test]
fn status_under_resp2_is_a_flat_field_value_array() {
    for server in servers() {
        let con = &mut server.connection();
        set_clock(con, 100_000);
        decide(con, &["RL.THROTTLE", "t", "4", "10", "1", "2"]);
        let status: Vec<Value> = cmd("RL.STATUS").arg("t").query(con).unwrap();
        let text: Vec<String> = status
            .iter()
            .map(|v| redis::from_redis_value::<String>(v).unwrap())
            .collect();
        let expected = [
            "algorithm",
            "throttle",
            "max_burst",
            "4",
            "count_per_period",
            "10",
            "period",
            "1",
            "allowed",
            "1",
            "limit",
            "5",
            "remaining",
            "2",
            "retry_after_ms",
            "0",
            "reset_after_ms",
        ];
        // RL.STATUS answers what a PEEK of cost 1 would: 3 units left, 2 after such a request.
        let name = server.binary().name();
        assert_eq!(text[..17], expected, "{name}");
        // 300 ms of TAT ahead, minus the wall-clock milliseconds since the call.
        let reset: i64 = text[17].parse().unwrap();
        assert!(
            (250..=300).contains(&reset),
            "{name}: reset_after_ms {reset}"
        );
    }
}

#[test]
fn commands_declare_keys_docs_and_acl_key_patterns_apply() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        let keys: Vec<String> = cmd("COMMAND")
            .arg("GETKEYS")
            .arg("RL.RESET")
            .arg("a")
            .arg("b")
            .arg("c")
            .query(con)
            .unwrap();
        assert_eq!(keys, ["a", "b", "c"], "{name}");
        let keys: Vec<String> = cmd("COMMAND")
            .arg("GETKEYS")
            .arg("RL.TOKENBUCKET")
            .arg("k")
            .arg(1)
            .arg(1)
            .arg(1)
            .query(con)
            .unwrap();
        assert_eq!(keys, ["k"], "{name}");
        let docs: Value = cmd("COMMAND")
            .arg("DOCS")
            .arg("rl.tokenbucket")
            .query(con)
            .unwrap();
        let text = format!("{docs:?}");
        for needle in [
            "Token bucket",
            "capacity",
            "refill_ms",
            "MAXWAIT",
            "redlimit",
        ] {
            assert!(
                text.contains(needle),
                "{name}: COMMAND DOCS lacks {needle}: {text}"
            );
        }
        let _: () = cmd("ACL")
            .arg("SETUSER")
            .arg("limited")
            .arg("on")
            .arg(">pw")
            .arg("~api:*")
            .arg("+@all")
            .query(con)
            .unwrap();
        let client =
            redis::Client::open(format!("redis://limited:pw@127.0.0.1:{}/", server.port()))
                .unwrap();
        let limited = &mut client.get_connection().unwrap();
        assert_eq!(
            decide(limited, &["RL.TOKENBUCKET", "api:1", "2", "1", "1000"])[0],
            1,
            "{name}"
        );
        assert!(
            error(limited, &["RL.TOKENBUCKET", "other:1", "2", "1", "1000"]).starts_with("NOPERM"),
            "{name}"
        );
        assert!(
            error(limited, &["RL.RESET", "api:1", "other:1"]).starts_with("NOPERM"),
            "{name}"
        );
    }
}

#[test]
fn info_counts_calls_allowed_and_denied() {
    for server in servers() {
        let con = &mut server.connection();
        for _ in 0..3 {
            bucket(con, &["COST", "2"]);
        }
        error(con, &["RL.TOKENBUCKET", "b", "0", "1", "1"]);
        let info: String = cmd("INFO").arg("redlimit").query(con).unwrap();
        for line in [
            "redlimit_tokenbucket_calls:4",
            "redlimit_tokenbucket_allowed:1",
            "redlimit_tokenbucket_denied:2",
        ] {
            assert!(
                info.contains(line),
                "{}: {line} in {info}",
                server.binary().name()
            );
        }
    }
}

#[test]
fn the_module_is_listed_and_scripts_can_call_it() {
    for server in servers() {
        let con = &mut server.connection();
        let modules: Value = cmd("MODULE").arg("LIST").query(con).unwrap();
        assert!(
            format!("{modules:?}").contains("redlimit"),
            "{}",
            server.binary().name()
        );
        let script = "return redis.call('RL.TOKENBUCKET', KEYS[1], 2, 1, 1000)";
        let reply: Vec<i64> = cmd("EVAL")
            .arg(script)
            .arg(1)
            .arg("lua")
            .query(con)
            .unwrap();
        assert_eq!(reply, [1, 2, 1, 0, 1_000], "{}", server.binary().name());
    }
}

#[test]
fn a_taken_throttle_name_leaves_the_module_loaded_without_it() {
    for binary in redlimit_test_support::available_servers() {
        let name = binary.name();
        // A built-in renamed to RL.THROTTLE before the module loads: a future built-in.
        let server = redlimit_test_support::ServerBuilder::new(&binary)
            .args(["--rename-command", "ECHO", "RL.THROTTLE"])
            .module(redlimit_test_support::module_path())
            .start();
        let con = &mut server.connection();
        let echoed: String = cmd("RL.THROTTLE").arg("hello").query(con).unwrap();
        assert_eq!(
            echoed, "hello",
            "{name}: the server's own command keeps the name"
        );
        assert_eq!(
            decide(con, &["RL.TOKENBUCKET", "k", "1", "1", "1000"])[0],
            1,
            "{name}"
        );
        assert!(
            server
                .log()
                .contains("rl.throttle already exists; loading without it"),
            "{name}: {}",
            server.log()
        );
    }
}
