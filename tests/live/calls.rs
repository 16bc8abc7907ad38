//! Calls and checks shared by the persistence and replication suites (included with
//! `#[path]`, so it is not a test target of its own).

#![allow(dead_code)]

use redis::Connection;
use redlimit_core::Limiter;
use redlimit_test_support::{
    KeySnapshot, ServerBinary, ServerBuilder, available_servers, module_path, stored_state,
};

/// Every server binary ([`available_servers`]: a missing one fails the test unless
/// `REDLIMIT_SKIP_MISSING_SERVERS=1`); says so when skipping left none.
pub fn servers() -> Vec<ServerBinary> {
    let servers = available_servers();
    if servers.is_empty() {
        eprintln!("skipped: no server (REDLIMIT_SKIP_MISSING_SERVERS=1)");
    }
    servers
}

/// A server of `binary` with the redlimit module.
pub fn with_module(binary: &ServerBinary) -> ServerBuilder {
    ServerBuilder::new(binary).module(module_path())
}

/// A key for messages.
pub fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// `command key args...` (args split on spaces).
pub fn command(command: &str, key: &[u8], args: &str) -> redis::Cmd {
    let mut cmd = redis::cmd(command);
    cmd.arg(key);
    for arg in args.split_whitespace() {
        cmd.arg(arg);
    }
    cmd
}

/// A limiting command's reply; panics naming the server on an error.
pub fn decide(con: &mut Connection, who: &str, name: &str, key: &[u8], args: &str) -> Vec<i64> {
    command(name, key, args)
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: {name} {} {args}: {e}", show(key)))
}

pub fn tokenbucket(con: &mut Connection, who: &str, key: &[u8], args: &str) -> Vec<i64> {
    decide(con, who, "RL.TOKENBUCKET", key, args)
}

pub fn throttle(con: &mut Connection, who: &str, key: &[u8], args: &str) -> Vec<i64> {
    decide(con, who, "RL.THROTTLE", key, args)
}

pub fn sliding(con: &mut Connection, who: &str, key: &[u8], args: &str) -> Vec<i64> {
    decide(con, who, "RL.SLIDING", key, args)
}

pub fn fixed(con: &mut Connection, who: &str, key: &[u8], args: &str) -> Vec<i64> {
    decide(con, who, "RL.FIXED", key, args)
}

/// `RL.ACQUIRE key <policy> id` (`policy`: "limit lease_ms").
pub fn acquire(con: &mut Connection, who: &str, key: &[u8], policy: &str, id: &[u8]) -> Vec<i64> {
    command("RL.ACQUIRE", key, policy)
        .arg(id)
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: RL.ACQUIRE {} {policy} {}: {e}", show(key), show(id)))
}

/// `RL.RELEASE key id`: 1 if the lease was held.
pub fn release(con: &mut Connection, who: &str, key: &[u8], id: &[u8]) -> i64 {
    redis::cmd("RL.RELEASE")
        .arg(key)
        .arg(id)
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: RL.RELEASE {} {}: {e}", show(key), show(id)))
}

/// The decoded limiter stored at `key`.
pub fn stored(con: &mut Connection, key: &[u8]) -> Limiter {
    let state = stored_state(con, key).unwrap_or_else(|| panic!("no key {}", show(key)));
    Limiter::decode(&state).unwrap_or_else(|e| panic!("{}: {e}: {state:?}", show(key)))
}

/// The key's absolute expiry is the moment its stored state is back to "no key",
/// rounded up to the millisecond: derived from the state alone.
pub fn assert_expiry_follows_state(snap: &KeySnapshot, who: &str) {
    let limiter = Limiter::decode(&snap.state)
        .unwrap_or_else(|e| panic!("{who}: stored state does not decode ({e}): {snap:?}"));
    let idle_ms = limiter.idle_at().as_micros().div_ceil(1_000);
    assert_eq!(
        snap.expire_at_ms,
        i64::try_from(idle_ms).unwrap(),
        "{who}: PEXPIRETIME is not the state's idle moment: {limiter:?}"
    );
}
