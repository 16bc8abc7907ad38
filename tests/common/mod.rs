//! Shared by the live contract tests: servers with the module, and reply helpers.

#![allow(dead_code)]

use redis::{Connection, RedisResult, Value, cmd};
use redlimit_test_support::{Server, ServerBuilder, available_servers, module_path};

/// One server with the module loaded per server binary, started lazily. A missing
/// server fails the test ([`available_servers`]) unless `REDLIMIT_SKIP_MISSING_SERVERS=1`.
pub fn servers() -> impl Iterator<Item = Server> {
    available_servers()
        .into_iter()
        .map(|binary| ServerBuilder::new(&binary).module(module_path()).start())
}

/// Sets the module's clock offset: the tests' way to move time forward.
pub fn set_clock(con: &mut Connection, offset_ms: u64) {
    let _: () = cmd("CONFIG")
        .arg("SET")
        .arg("redlimit.clock-offset-ms")
        .arg(offset_ms)
        .query(con)
        .unwrap();
}

/// Runs one command that answers a RESP2 decision.
pub fn decide(con: &mut Connection, args: &[&str]) -> [i64; 5] {
    let reply: Vec<i64> = cmd(args[0]).arg(&args[1..]).query(con).unwrap();
    reply.try_into().unwrap()
}

/// Runs one command that must fail, and returns its error text.
pub fn error(con: &mut Connection, args: &[&str]) -> String {
    let reply: RedisResult<Value> = cmd(args[0]).arg(&args[1..]).query(con);
    let error = reply.expect_err(&format!("{args:?} should fail"));
    let code = error.code().unwrap_or_default();
    let detail = error.detail().unwrap_or_default();
    format!("{code} {detail}").trim().to_owned()
}

/// Asserts a decision whose durations may have shrunk by the wall-clock time that passed
/// between calls (the test clock offsets the server clock; it does not stop it).
#[track_caller]
pub fn assert_near(actual: [i64; 5], expected: [i64; 5], context: &str) {
    assert_eq!(actual[..3], expected[..3], "{context}: {actual:?}");
    for i in 3..5 {
        let ok = if expected[i] <= 0 {
            actual[i] == expected[i]
        } else {
            // +1: a lease ends `lease_ms` after now rounded up to the millisecond.
            (expected[i] - 100..=expected[i] + 1).contains(&actual[i])
        };
        assert!(ok, "{context}: {actual:?}, expected about {expected:?}");
    }
}

/// `DEBUG DIGEST-VALUE key`: changes whenever the stored state changes.
pub fn digest(con: &mut Connection, key: &str) -> Value {
    cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query(con)
        .unwrap()
}
