//! Fail-safe regressions (issue 11), on every server binary: a misconfigured load, a
//! policy change, an idle key, a lease, a peek over a repeated key and a bad argument
//! must never admit more than the contract says, lock callers out longer than it says,
//! or crash the server.
//!
//! Time moves with `CONFIG SET redlimit.clock-offset-ms`, never with sleeps.

mod common;

use common::{decide, error, servers, set_clock};
use redis::{Connection, Value, cmd};
use redlimit_test_support::{ServerBuilder, TempDir, available_servers, module_path};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Counts how many of `calls` identical calls were allowed.
fn allowed_of(con: &mut Connection, args: &[&str], calls: usize) -> usize {
    (0..calls).filter(|_| decide(con, args)[0] == 1).count()
}

/// Starts `binary` with `args` and waits for it to exit: a refused load must stop it.
fn refused_start(binary: &std::path::Path, args: &[&str]) -> String {
    let dir = TempDir::new().unwrap();
    let log = dir.path().join("server.log");
    // A real port: Redis 7.0 exits before loading modules when it listens nowhere.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let mut child = Command::new(binary)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--save",
            "",
            "--dir",
        ])
        .arg(dir.path())
        .arg("--logfile")
        .arg(&log)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{} {args:?} kept running", binary.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !status.success(),
        "{} {args:?} must refuse to start\n{text}",
        binary.display()
    );
    text
}

#[test]
fn a_clock_offset_out_of_range_refuses_the_load() {
    let module = module_path().display().to_string();
    for binary in available_servers() {
        let name = binary.name();
        for value in ["-3600000", "100000000000000", "-5", "12abc"] {
            let log = refused_start(
                &binary.path,
                &["--loadmodule", &module, "clock-offset-ms", value],
            );
            let expected = format!(
                "redlimit: not loaded: clock-offset-ms must be an integer from 0 to \
                 10000000000000 (milliseconds), got '{value}'"
            );
            assert!(log.contains(&expected), "{name}: {value}: {log}");
        }
        let log = refused_start(
            &binary.path,
            &["--loadmodule", &module, "clock-ofset-ms", "5"],
        );
        assert!(
            log.contains("unknown module argument 'clock-ofset-ms'"),
            "{name}: {log}"
        );
        // The same value as a config line (`redlimit.clock-offset-ms -5`).
        let log = refused_start(
            &binary.path,
            &["--loadmodule", &module, "--redlimit.clock-offset-ms", "-5"],
        );
        assert!(
            log.contains(
                "redlimit: not loaded: the server refused a value of redlimit.clock-offset-ms"
            ),
            "{name}: {log}"
        );
    }
}

#[test]
fn module_loadex_with_a_bad_offset_fails_cleanly_and_a_good_one_limits() {
    let module = module_path().display().to_string();
    for binary in available_servers() {
        let name = binary.name();
        let server = ServerBuilder::new(&binary).start();
        let con = &mut server.connection();
        for value in ["-5", "100000000000000"] {
            let refused = error(
                con,
                &[
                    "MODULE",
                    "LOADEX",
                    &module,
                    "CONFIG",
                    "redlimit.clock-offset-ms",
                    value,
                ],
            );
            assert!(refused.starts_with("ERR"), "{name}: {value}: {refused}");
            let refused = error(
                con,
                &[
                    "MODULE",
                    "LOADEX",
                    &module,
                    "ARGS",
                    "clock-offset-ms",
                    value,
                ],
            );
            assert!(refused.starts_with("ERR"), "{name}: {value}: {refused}");
            assert_eq!(
                cmd("PING").query::<String>(con).unwrap(),
                "PONG",
                "{name}: {value}"
            );
        }
        // The largest offset loads, limits, and survives a reload of its own RDB.
        let _: () = cmd("MODULE")
            .arg("LOADEX")
            .arg(&module)
            .arg("CONFIG")
            .arg("redlimit.clock-offset-ms")
            .arg("10000000000000")
            .query(con)
            .unwrap();
        let bucket = ["RL.TOKENBUCKET", "k", "3", "1", "60000"];
        assert_eq!(allowed_of(con, &bucket, 20), 3, "{name}");
        assert_eq!(allowed_of(con, &["RL.FIXED", "f", "3", "60000"], 20), 3);
        let _: () = cmd("DEBUG").arg("RELOAD").query(con).unwrap();
        assert_eq!(allowed_of(con, &bucket, 5), 0, "{name}: state kept");
    }
}

#[test]
fn the_largest_offset_at_load_limits_and_restarts_from_its_rdb() {
    for binary in available_servers() {
        let name = binary.name();
        let data = TempDir::new().unwrap();
        let server = ServerBuilder::new(&binary)
            .module(module_path())
            .module_args(["clock-offset-ms", "10000000000000"])
            .dir(data.path())
            .start();
        let con = &mut server.connection();
        let bucket = ["RL.TOKENBUCKET", "k", "3", "1", "60000"];
        assert_eq!(allowed_of(con, &bucket, 20), 3, "{name}");
        let _: () = cmd("SAVE").query(con).unwrap();
        drop(server);
        let again = ServerBuilder::new(&binary)
            .module(module_path())
            .module_args(["clock-offset-ms", "10000000000000"])
            .dir(data.path())
            .start();
        let con = &mut again.connection();
        assert_eq!(allowed_of(con, &bucket, 5), 0, "{name}: state kept");
    }
}

#[test]
fn a_policy_change_caps_the_usage_at_the_new_limit() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 10_000_000);
        // The issue's reproduction: 16.5 minutes of lock-out on a bucket of 10 s.
        decide(
            con,
            &["RL.TOKENBUCKET", "b", "1000", "1", "1000", "COST", "1000"],
        );
        let denied = decide(con, &["RL.TOKENBUCKET", "b", "10", "1", "1000"]);
        assert_eq!(denied[..3], [0, 10, 0], "{name}");
        assert!((1..=1_000).contains(&denied[3]), "{name}: {denied:?}");
        assert!((9_900..=10_000).contains(&denied[4]), "{name}: {denied:?}");
        set_clock(con, 10_000_000 + 1_000);
        assert_eq!(
            decide(con, &["RL.TOKENBUCKET", "b", "10", "1", "1000"])[0],
            1,
            "{name}: one token back after 1 s"
        );

        // Same window, a lower limit: the count is capped at the new limit; the window
        // ends when it would have.
        decide(con, &["RL.FIXED", "f", "100", "60000", "COST", "100"]);
        let denied = decide(con, &["RL.FIXED", "f", "10", "60000"]);
        assert_eq!(denied[..3], [0, 10, 0], "{name}");
        assert!(denied[3] <= 60_000, "{name}: {denied:?}");
        // A longer window keeps the usage: it counts in the new window holding the old one.
        decide(con, &["RL.FIXED", "g", "10", "1000", "COST", "10"]);
        let denied = decide(con, &["RL.FIXED", "g", "10", "3600000"]);
        assert_eq!(denied[..3], [0, 10, 0], "{name}: {denied:?}");
        // A shorter window: the usage counts in the new window holding the start of the
        // old one (never a wait longer than a new window just used up).
        decide(con, &["RL.FIXED", "h", "100", "3600000", "COST", "100"]);
        let after = decide(con, &["RL.FIXED", "h", "10", "1000", "PEEK"]);
        assert!(after[0] == 1 || after[3] <= 1_000, "{name}: {after:?}");

        decide(con, &["RL.SLIDING", "s", "1000", "60000", "COST", "1000"]);
        let denied = decide(con, &["RL.SLIDING", "s", "10", "60000"]);
        assert_eq!(denied[..3], [0, 10, 0], "{name}");
        assert!(denied[3] <= 60_000, "{name}: {denied:?}");
        let peek = decide(
            con,
            &["RL.SLIDING", "s", "10", "60000", "COST", "10", "PEEK"],
        );
        assert!(
            (0..=50).contains(&(denied[3] - peek[3])),
            "{name}: one window frees all 10: {peek:?} after {denied:?}"
        );

        decide(
            con,
            &["RL.SLIDING", "a", "1000", "60000", "APPROX", "COST", "1000"],
        );
        let denied = decide(con, &["RL.SLIDING", "a", "10", "60000", "APPROX"]);
        assert_eq!(denied[..3], [0, 10, 0], "{name}");
        // No worse off than a fresh limiter whose whole new limit was just used: that
        // one waits for the rest of the window and then a tenth of the next (up to 66 s
        // early in a window), not at most 60 s.
        decide(
            con,
            &[
                "RL.SLIDING",
                "a-fresh",
                "10",
                "60000",
                "APPROX",
                "COST",
                "10",
            ],
        );
        let fresh = decide(con, &["RL.SLIDING", "a-fresh", "10", "60000", "APPROX"]);
        assert!(
            denied[3] <= fresh[3] + 50 && denied[3] <= 66_000,
            "{name}: {denied:?}, a fresh limiter just used up: {fresh:?}"
        );
        let shorter = decide(con, &["RL.SLIDING", "a", "10", "1000", "APPROX", "PEEK"]);
        assert!(
            shorter[0] == 1 || shorter[3] <= 2_000,
            "{name}: {shorter:?}"
        );

        decide(con, &["RL.THROTTLE", "t", "99", "1", "1", "100"]);
        let denied = decide(con, &["RL.THROTTLE", "t", "2", "1", "1"]);
        assert_eq!(denied[..3], [1, 3, 0], "{name}: limited");
        assert_eq!(denied[3], 1, "{name}: 1 s, not 100: {denied:?}");
    }
}

#[test]
fn a_key_past_its_idle_moment_is_an_absent_key() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 20_000_000);
        decide(con, &["RL.FIXED", "k", "5", "1000", "COST", "5"]);
        decide(con, &["RL.ACQUIRE", "l", "1", "1000", "a"]);
        // 10 s later on the test clock: both keys idle, still present (the server
        // expires by its own clock).
        set_clock(con, 20_010_000);
        assert_eq!(cmd("EXISTS").arg("k").query::<i64>(con).unwrap(), 1);
        assert_eq!(
            cmd("RL.STATUS").arg("k").query::<Value>(con).unwrap(),
            Value::Nil,
            "{name}: an idle key has no status"
        );
        assert_eq!(
            decide(con, &["RL.TOKENBUCKET", "k", "3", "1", "1000"]),
            [1, 3, 2, 0, 1_000],
            "{name}: not WRONGTYPE: a fresh bucket"
        );
        assert_eq!(
            decide(con, &["RL.SLIDING", "l", "2", "1000"]),
            [1, 2, 1, 0, 1_000],
            "{name}: an idle lease key is absent too"
        );
    }
}

#[test]
fn leases_last_at_least_lease_ms_and_retry_waits_for_enough_expiries() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        for attempt in 0..20 {
            let key = format!("lease{attempt}");
            let (seconds, micros): (String, String) = cmd("TIME").query(con).unwrap();
            let before_us: u64 =
                seconds.parse::<u64>().unwrap() * 1_000_000 + micros.parse::<u64>().unwrap();
            decide(con, &["RL.ACQUIRE", &key, "1", "100", "a"]);
            let expire_ms: u64 = cmd("PEXPIRETIME").arg(&key).query(con).unwrap();
            assert!(
                expire_ms * 1_000 >= before_us + 100_000,
                "{name}: the lease ends at {expire_ms} ms, before {} us",
                before_us + 100_000
            );
        }
        // Three leases taken 100 ms apart (the test clock adds to the server clock, so
        // a few real milliseconds pass between calls too).
        for (offset, id) in [(0, "a"), (100, "b"), (200, "c")] {
            set_clock(con, 30_000_000 + offset);
            assert_eq!(decide(con, &["RL.ACQUIRE", "held", "3", "10000", id])[0], 1);
        }
        // The limit lowered below the 3 held: a new holder fits once enough have expired
        // (all 3 for a limit of 1, 2 for a limit of 2) — not when the first one does.
        let one = decide(con, &["RL.ACQUIRE", "held", "1", "10000", "d"]);
        assert_eq!(one[..3], [0, 1, 0], "{name}");
        // Expiries are rounded up to the ms, durations from now rounded up too: +1.
        assert!((9_900..=10_001).contains(&one[3]), "{name}: {one:?}");
        let two = decide(con, &["RL.ACQUIRE", "held", "2", "10000", "d"]);
        assert_eq!(two[..3], [0, 2, 0], "{name}");
        assert!((9_800..=9_901).contains(&two[3]), "{name}: {two:?}");
        set_clock(con, 30_000_200 + 9_950);
        assert_eq!(
            decide(con, &["RL.ACQUIRE", "held", "1", "10000", "d"])[0],
            0,
            "{name}: one lease still held"
        );
        assert_eq!(
            decide(con, &["RL.ACQUIRE", "held", "2", "10000", "d"])[0],
            1,
            "{name}: two expired"
        );
    }
}

#[test]
fn a_peek_over_a_repeated_key_answers_what_the_call_would() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        set_clock(con, 40_000_000);
        let call = |con: &mut Connection, key: &str, peek: bool| {
            let mut command = cmd("RL.ALL");
            command
                .arg(2)
                .arg(key)
                .arg(key)
                .arg("FIXED")
                .arg(1)
                .arg(1000)
                .arg("FIXED")
                .arg(1)
                .arg(1000);
            if peek {
                command.arg("PEEK");
            }
            command.query::<Value>(con).unwrap()
        };
        // Compared without the durations: real milliseconds pass between the two calls.
        let shape = |reply: Value| -> Vec<Vec<i64>> {
            let Value::Array(items) = reply else {
                panic!("{name}: {reply:?}")
            };
            items
                .into_iter()
                .map(|item| match item {
                    Value::Int(allowed) => vec![allowed],
                    Value::Array(fields) => fields[..3]
                        .iter()
                        .map(|field| redis::from_redis_value(field).unwrap())
                        .collect(),
                    other => panic!("{name}: {other:?}"),
                })
                .collect()
        };
        let peeked = shape(call(con, "{p}1", true));
        let counted = shape(call(con, "{p}2", false));
        assert_eq!(peeked, counted, "{name}");
        assert_eq!(peeked, [vec![0], vec![1, 1, 0], vec![0, 1, 0]], "{name}");
        assert_eq!(
            cmd("EXISTS").arg("{p}1").query::<i64>(con).unwrap(),
            0,
            "{name}: a peek writes nothing"
        );
    }
}

#[test]
fn errors_name_the_real_bound_and_the_token() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["RL.SLIDING", "k", "10", "99999999999999999999"],
            "ERR window_ms must be at most 10000000000000",
        ),
        (
            &["RL.SLIDING", "k", "10", "10000000000001"],
            "ERR window_ms must be at most 10000000000000",
        ),
        (
            &[
                "RL.TOKENBUCKET",
                "k",
                "1",
                "1",
                "1",
                "COST",
                "18446744073709551615",
            ],
            "ERR COST must be at most 4611686018427387904",
        ),
        (
            &["RL.FIXED", "k", "1", "1", "COST", "99999999999999999999999"],
            "ERR COST must be at most 4611686018427387904",
        ),
        (
            &["RL.THROTTLE", "k", "1", "1", "1", "18446744073709551615"],
            "ERR quantity must be at most 4611686018427387904",
        ),
        (
            &["RL.SLIDING", "k", "10", "1000", "COST"],
            "ERR syntax error: COST needs a value (COST n)",
        ),
        (
            &["RL.TOKENBUCKET", "k", "1", "1", "1", "MAXWAIT"],
            "ERR syntax error: MAXWAIT needs a value (MAXWAIT ms)",
        ),
        (
            &["RL.SLIDING", "k", "10", "1000", "COST", "2", "COST", "3"],
            "ERR syntax error: COST given twice",
        ),
        (
            &["RL.SLIDING", "k", "10", "1000", "APROX"],
            "ERR syntax error near 'APROX'",
        ),
        (
            &["RL.FIXED", "k", "10", "1000", "APPROX"],
            "ERR syntax error near 'APPROX'",
        ),
        (
            &["RL.ALL", "1", "k", "SLIDNG", "10", "1000"],
            "ERR syntax error near 'SLIDNG' (policy 1 of 1 must be TOKENBUCKET, SLIDING or FIXED)",
        ),
        (
            &["RL.ALL", "2", "a", "b", "SLIDING", "10", "60000"],
            "ERR RL.ALL needs one policy per key: 2 keys but 1 policies",
        ),
        (
            &[
                "RL.ALL", "2", "a", "b", "SLIDING", "10", "60000", "COST", "1",
            ],
            "ERR RL.ALL needs one policy per key: 2 keys but 1 policies",
        ),
    ];
    for server in servers() {
        let con = &mut server.connection();
        for (args, expected) in cases {
            assert_eq!(
                error(con, args),
                *expected,
                "{}: {args:?}",
                server.binary().name()
            );
        }
        // Tokens that are not printable are shown escaped, never as raw bytes.
        let reply: redis::RedisResult<Value> = cmd("RL.FIXED")
            .arg("k")
            .arg(1)
            .arg(1)
            .arg(&b"\r\n\xff"[..])
            .query(con);
        let error = reply.unwrap_err();
        assert_eq!(
            error.detail(),
            Some(r"syntax error near '\r\n\xff'"),
            "{error}"
        );
    }
}

/// Every string of a `COMMAND DOCS` reply, in order.
fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            strings(k, out);
            strings(v, out);
        }),
        _ => {}
    }
}

#[test]
fn command_docs_name_option_values() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        let mut words = Vec::new();
        for command in ["rl.tokenbucket", "rl.sliding", "rl.throttle"] {
            let docs: Value = cmd("COMMAND").arg("DOCS").arg(command).query(con).unwrap();
            strings(&docs, &mut words);
        }
        let names: Vec<&str> = words
            .windows(2)
            .filter(|pair| pair[0] == "name")
            .map(|pair| pair[1].as_str())
            .collect();
        for expected in ["n", "ms", "period_s"] {
            assert!(names.contains(&expected), "{name}: {names:?}");
        }
        for wrong in ["COST", "MAXWAIT", "period"] {
            assert!(!names.contains(&wrong), "{name}: {wrong} in {names:?}");
        }
    }
}

#[test]
fn rl_all_takes_at_most_32_limits() {
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        let call = |con: &mut Connection, n: usize| {
            let mut command = cmd("RL.ALL");
            command.arg(n);
            for i in 0..n {
                command.arg(format!("{{k}}{i}"));
            }
            for _ in 0..n {
                command.arg("FIXED").arg(1).arg(1000);
            }
            command.query::<Value>(con)
        };
        let Value::Array(items) = call(con, 32).unwrap() else {
            panic!("{name}")
        };
        assert_eq!(items.len(), 33, "{name}");
        let refused = call(con, 33).unwrap_err();
        assert_eq!(
            refused.detail(),
            Some("numkeys must be at most 32"),
            "{name}: {refused}"
        );
    }
}

#[test]
fn states_no_command_can_produce_are_refused() {
    use redlimit_core::{BucketState, Limiter, SlidingLog, SlidingWindow, Timestamp, TokenBucket};
    let locked = Limiter::TokenBucket(
        TokenBucket::new(3, 1, 1_000).unwrap(),
        BucketState {
            deficit: u64::MAX,
            at: Timestamp::from_millis(1_000),
        },
    )
    .encode();
    // 100,000 entries under a limit of 1 (the issue's was 10^7: 160-330 ms per call).
    let long_log = Limiter::Sliding(
        SlidingWindow::new(1, 60_000).unwrap(),
        Box::new(SlidingLog::from_parts(1_000, [0u8, 1].repeat(100_000)).unwrap()),
    )
    .encode();
    // An exact log beyond the largest limit, hand-written: version, tag, limit, window,
    // first time, one entry.
    let beyond = [
        &[1u8, 4][..],
        &[0x81, 0x80, 0x04],
        &[0xe8, 0x07],
        &[0xe8, 0x07],
        &[0, 1],
    ]
    .concat();
    for server in servers() {
        let con = &mut server.connection();
        let name = server.binary().name();
        let refused: redis::RedisResult<()> =
            cmd("RL.SETSTATE").arg("k").arg(&locked[..]).query(con);
        assert_eq!(
            refused.unwrap_err().detail(),
            Some("state must be a redlimit state (a state no command can produce)"),
            "{name}"
        );
        assert_eq!(cmd("EXISTS").arg("k").query::<i64>(con).unwrap(), 0);
        for (what, state, why) in [
            (
                "a log longer than its limit",
                &long_log,
                "a state no command can produce",
            ),
            ("a log limit above 65536", &beyond, "invalid policy"),
        ] {
            let refused: redis::RedisResult<()> =
                cmd("RL.SETSTATE").arg("k").arg(&state[..]).query(con);
            assert_eq!(
                refused.unwrap_err().detail(),
                Some(format!("state must be a redlimit state ({why})").as_str()),
                "{name}: {what}"
            );
        }
        assert_eq!(cmd("EXISTS").arg("k").query::<i64>(con).unwrap(), 0);
    }
}
