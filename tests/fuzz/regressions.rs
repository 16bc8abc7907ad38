//! Regression tests for the bugs the fuzzer found, and their helpers. The tests are run
//! from the crate root (`main.rs`), so that their names stay the same.

pub mod clock;
pub mod ranges;
pub mod replies;

use redis::Value;
use redlimit_test_support::available_servers;

use crate::oracle::replies::{decision_fields, text_of};
use crate::target::Target;

/// Runs `check` on every available server; it returns the contract violations it saw.
pub fn on_every_server(check: impl Fn(&mut Target) -> Result<Vec<String>, String>) {
    let mut violations = Vec::new();
    for binary in available_servers() {
        let mut target = Target::start(&binary);
        let found = check(&mut target).unwrap_or_else(|e| panic!("{}: {e}", binary.name()));
        violations.extend(found.into_iter().map(|v| format!("{}: {v}", binary.name())));
        target.move_clock(0).expect("resetting the clock");
        target.check_log();
    }
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

/// A command line as bytes.
pub fn parts_of<'a>(call: &[&'a str]) -> Vec<&'a [u8]> {
    call.iter().map(|p| p.as_bytes()).collect()
}

/// The decision fields of a RESP2 reply to `call`.
pub fn decide(target: &mut Target, call: &[&str]) -> Result<[i64; 5], String> {
    let reply = target.query(false, &parts_of(call))?;
    decision_fields(&reply).map_err(|e| format!("{call:?}: {e}"))
}

/// The integer field `name` of a RESP2 RL.STATUS reply (the first, if it were repeated:
/// `status_names_each_field_once` checks that).
pub fn status_field(status: &Value, name: &str) -> Option<i64> {
    let Value::Array(items) = status else {
        return None;
    };
    items.chunks(2).find_map(|pair| match pair {
        [key, Value::Int(n)] if text_of(key).as_deref() == Some(name) => Some(*n),
        _ => None,
    })
}

/// The server's clock in milliseconds (with the offset at 0).
pub fn server_ms(t: &mut Target) -> Result<i64, String> {
    Ok(i64::try_from(t.server_micros()? / 1_000).unwrap_or(i64::MAX))
}

/// The words of a command line.
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}
