//! Limiter state survives every way a server persists, reloads or moves a key: RDB
//! restart, AOF restart (with and without the RDB preamble, with and without a rewrite,
//! clean stop and crash), `DEBUG RELOAD`, `DUMP`/`RESTORE`, `MIGRATE`, `COPY`, `RENAME`.
//! Reloading at a later clock never re-runs a decision: the stored bytes, the digest and
//! the absolute expiry stay identical. `RL.SETSTATE` refuses anything that is not a valid state.
//!
//! Every test runs against every server found by `available_servers()`; build the module
//! first (`cargo build -p redlimit-module`). Time moves with the module's clock offset,
//! never with sleeps.

use std::fs;
use std::path::Path;
use std::time::Instant;

use redis::{Connection, Value};
use redlimit_core::{BucketState, Limiter, Timestamp, TokenBucket};
use redlimit_test_support::{
    KeySnapshot, ServerBinary, ServerBuilder, Status, available_servers, info_value, module_path,
    set_clock_offset, snapshot, status, stored_state,
};

// ---------------------------------------------------------------------------------------
// The workload: a timeline of allowed, denied, PEEK, COST 0, MAXWAIT, THROTTLE, policy
// change and RESET calls, in two phases (so an AOF rewrite can happen in between).
// ---------------------------------------------------------------------------------------

/// Token bucket, 10 tokens, one a minute (slow: nothing refills during a test).
const BASIC: &[u8] = b"tb:basic";
/// Token bucket used with MAXWAIT (borrowing: the state goes below zero tokens).
const BORROW: &[u8] = b"tb:borrow";
/// redis-cell throttle, burst 5, one a minute.
const CELL: &[u8] = b"th:cell";
/// A key that is not UTF-8.
const BINARY: &[u8] = b"bin:\xff\x00\xfe";
/// Token bucket called with a new policy (a tier upgrade keeps the usage).
const UPGRADE: &[u8] = b"tb:upgrade";
/// Created, then deleted with RL.RESET.
const GONE: &[u8] = b"tb:gone";
/// A plain string living next to the limiters.
const PLAIN: &[u8] = b"plain:string";

/// The limiter keys the workload leaves, with the command and policy each was last
/// called with.
const LIMITERS: [(&[u8], &str, &str); 5] = [
    (BASIC, "RL.TOKENBUCKET", "10 1 60000"),
    (BORROW, "RL.TOKENBUCKET", "5 5 10000"),
    (CELL, "RL.THROTTLE", "4 1 60"),
    (BINARY, "RL.TOKENBUCKET", "3 1 60000"),
    (UPGRADE, "RL.TOKENBUCKET", "20 1 60000"),
];
/// How many of [`LIMITERS`] exist after phase one (all but UPGRADE).
const PHASE_ONE_LIMITERS: usize = 4;

/// Clock offset of phase one.
const PHASE_ONE_OFFSET: u64 = 1_000;
/// Clock offset of phase two; statuses are compared under it.
const STATUS_OFFSET: u64 = 2_500;
/// Clock offset a restarted server gets from its module arguments: replay happens later.
const LATER_OFFSET: &str = "50000";

/// What a phase propagated: `RL.SETSTATE` and `RL.RESET` commands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Written {
    setstate: usize,
    reset: usize,
}

impl std::ops::Add for Written {
    type Output = Written;
    fn add(self, other: Written) -> Written {
        Written {
            setstate: self.setstate + other.setstate,
            reset: self.reset + other.reset,
        }
    }
}

fn servers() -> Vec<ServerBinary> {
    let servers = available_servers();
    if servers.is_empty() {
        eprintln!("skipped: no server found; run scripts/install-deps.sh");
    }
    servers
}

/// A server of `binary` with the redlimit module.
fn with_module(binary: &ServerBinary) -> ServerBuilder {
    ServerBuilder::new(binary).module(module_path())
}

fn show(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// `command key args...` (args split on spaces).
fn command(command: &str, key: &[u8], args: &str) -> redis::Cmd {
    let mut cmd = redis::cmd(command);
    cmd.arg(key);
    for arg in args.split_whitespace() {
        cmd.arg(arg);
    }
    cmd
}

/// A limiting command's reply; panics naming the server on an error.
fn decide(con: &mut Connection, who: &str, name: &str, key: &[u8], args: &str) -> Vec<i64> {
    command(name, key, args)
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: {name} {} {args}: {e}", show(key)))
}

fn tokenbucket(con: &mut Connection, who: &str, key: &[u8], args: &str) -> Vec<i64> {
    decide(con, who, "RL.TOKENBUCKET", key, args)
}

fn throttle(con: &mut Connection, who: &str, key: &[u8], args: &str) -> Vec<i64> {
    decide(con, who, "RL.THROTTLE", key, args)
}

/// Phase one, at clock offset [`PHASE_ONE_OFFSET`]: every kind of call, asserting replies.
fn phase_one(con: &mut Connection, who: &str) -> Written {
    set_clock_offset(con, PHASE_ONE_OFFSET);
    let mut written = Written::default();

    // A first call and the key's TTL in one transaction: the key expires when the
    // limiter is back to full, in the offset clock, so PTTL = reset_after + offset.
    let (reply, pttl): (Vec<i64>, i64) = redis::pipe()
        .atomic()
        .add_command(command("RL.TOKENBUCKET", BASIC, "10 1 60000"))
        .cmd("PTTL")
        .arg(BASIC)
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: MULTI RL.TOKENBUCKET PTTL: {e}"));
    assert_eq!(reply, [1, 10, 9, 0, 60_000], "{who}: first call");
    let expected_pttl = 60_000 + PHASE_ONE_OFFSET as i64;
    assert!(
        (expected_pttl - 10..=expected_pttl + 1).contains(&pttl),
        "{who}: PTTL {pttl} right after a call that resets in 60000 ms at offset {PHASE_ONE_OFFSET}"
    );
    written.setstate += 1;

    let reply = tokenbucket(con, who, BASIC, "10 1 60000 COST 2");
    assert_eq!(reply[..4], [1, 10, 7, 0], "{who}: COST 2 {reply:?}");
    written.setstate += 1;
    let reply = tokenbucket(con, who, BASIC, "10 1 60000 COST 9");
    assert_eq!(reply[..3], [0, 10, 7], "{who}: COST 9 is denied {reply:?}");
    assert!(
        reply[3] > 100_000,
        "{who}: denied COST 9 retry_after {reply:?}"
    );
    let reply = tokenbucket(con, who, BASIC, "10 1 60000 PEEK");
    assert_eq!(reply[..4], [1, 10, 6, 0], "{who}: PEEK {reply:?}");
    let reply = tokenbucket(con, who, BASIC, "10 1 60000 COST 0");
    assert_eq!(reply[..4], [1, 10, 7, 0], "{who}: COST 0 {reply:?}");

    let reply = tokenbucket(con, who, BORROW, "5 5 10000 COST 5");
    assert_eq!(reply, [1, 5, 0, 0, 10_000], "{who}: empty the bucket");
    written.setstate += 1;
    let reply = tokenbucket(con, who, BORROW, "5 5 10000 COST 3 MAXWAIT 10000");
    assert_eq!(reply[..3], [1, 5, 0], "{who}: MAXWAIT borrows {reply:?}");
    assert!(
        (5_000..=6_000).contains(&reply[3]),
        "{who}: 3 borrowed tokens at 1 per 2 s: retry_after about 6000, {reply:?}"
    );
    written.setstate += 1;
    let reply = tokenbucket(con, who, BORROW, "5 5 10000 COST 5 MAXWAIT 1000");
    assert_eq!(reply[..3], [0, 5, 0], "{who}: too much to borrow {reply:?}");

    // A throttle key lives until its theoretical arrival time: one period after one call.
    let (reply, pttl): (Vec<i64>, i64) = redis::pipe()
        .atomic()
        .add_command(command("RL.THROTTLE", CELL, "4 1 60"))
        .cmd("PTTL")
        .arg(CELL)
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: MULTI RL.THROTTLE PTTL: {e}"));
    assert_eq!(reply, [0, 5, 4, -1, 60], "{who}: first THROTTLE");
    assert!(
        (expected_pttl - 10..=expected_pttl + 1).contains(&pttl),
        "{who}: PTTL {pttl} right after a THROTTLE that resets in 60 s at offset {PHASE_ONE_OFFSET}"
    );
    written.setstate += 1;
    for remaining in [3, 2] {
        let reply = throttle(con, who, CELL, "4 1 60");
        assert_eq!(
            reply[..4],
            [0, 5, remaining, -1],
            "{who}: THROTTLE {reply:?}"
        );
        written.setstate += 1;
    }
    let reply = throttle(con, who, CELL, "4 1 60 10");
    assert_eq!(
        reply[..3],
        [1, 5, 2],
        "{who}: THROTTLE quantity 10 {reply:?}"
    );

    let reply = tokenbucket(con, who, BINARY, "3 1 60000");
    assert_eq!(reply, [1, 3, 2, 0, 60_000], "{who}: binary key");
    written.setstate += 1;

    let reply = tokenbucket(con, who, GONE, "3 1 60000");
    assert_eq!(reply[..3], [1, 3, 2], "{who}: {reply:?}");
    written.setstate += 1;
    let deleted: i64 = redis::cmd("RL.RESET").arg(GONE).query(con).unwrap();
    assert_eq!(deleted, 1, "{who}: RL.RESET");
    written.reset += 1;

    let () = redis::cmd("SET")
        .arg(PLAIN)
        .arg("hello")
        .query(con)
        .unwrap();
    written
}

/// Phase two, at clock offset [`STATUS_OFFSET`].
fn phase_two(con: &mut Connection, who: &str) -> Written {
    set_clock_offset(con, STATUS_OFFSET);
    let mut written = Written::default();

    let reply = tokenbucket(con, who, UPGRADE, "5 1 60000 COST 4");
    assert_eq!(reply[..4], [1, 5, 1, 0], "{who}: {reply:?}");
    written.setstate += 1;
    let reply = tokenbucket(con, who, UPGRADE, "20 1 60000");
    assert_eq!(
        reply[..4],
        [1, 20, 15, 0],
        "{who}: a new policy keeps the usage"
    );
    written.setstate += 1;

    let reply = tokenbucket(con, who, BASIC, "10 1 60000");
    assert_eq!(reply[..4], [1, 10, 6, 0], "{who}: {reply:?}");
    written.setstate += 1;
    let reply = tokenbucket(con, who, BASIC, "10 1 60000 COST 100 PEEK");
    assert_eq!(
        reply[..4],
        [0, 10, 6, -1],
        "{who}: cost above capacity {reply:?}"
    );

    let reply = throttle(con, who, CELL, "4 1 60");
    assert_eq!(reply[..4], [0, 5, 1, -1], "{who}: THROTTLE {reply:?}");
    written.setstate += 1;
    written
}

/// The workload's limiter keys that exist, with their snapshots.
fn snapshots(con: &mut Connection, who: &str) -> Vec<(Vec<u8>, KeySnapshot)> {
    LIMITERS
        .iter()
        .filter_map(|(key, _, _)| snapshot(con, *key).map(|s| (key.to_vec(), s)))
        .inspect(|(key, snap)| assert_expiry_follows_state(snap, &format!("{who}, {}", show(key))))
        .collect()
}

/// `RL.STATUS` of every limiter key that exists.
fn statuses(con: &mut Connection) -> Vec<(Vec<u8>, Status)> {
    LIMITERS
        .iter()
        .filter_map(|(key, _, _)| status(con, *key).map(|s| (key.to_vec(), s)))
        .collect()
}

/// The key's absolute expiry is the moment its stored state is back to "no key",
/// rounded up to the millisecond: derived from the state alone.
fn assert_expiry_follows_state(snap: &KeySnapshot, who: &str) {
    let limiter = Limiter::decode(&snap.state)
        .unwrap_or_else(|e| panic!("{who}: stored state does not decode ({e}): {snap:?}"));
    let idle_ms = limiter.idle_at().as_micros().div_ceil(1_000);
    assert_eq!(
        snap.expire_at_ms,
        i64::try_from(idle_ms).unwrap(),
        "{who}: PEXPIRETIME is not the state's idle moment: {limiter:?}"
    );
}

/// Checks that the keyspace after a reload is exactly the one before it.
fn assert_same_keyspace(
    con: &mut Connection,
    who: &str,
    before: &[(Vec<u8>, KeySnapshot)],
    statuses_before: &[(Vec<u8>, Status)],
    read_at: Instant,
) {
    assert_eq!(
        snapshots(con, who),
        before,
        "{who}: stored limiters changed"
    );
    assert_eq!(
        redis::cmd("EXISTS").arg(GONE).query::<i64>(con).unwrap(),
        0,
        "{who}: the key deleted by RL.RESET is back"
    );
    let plain: String = redis::cmd("GET").arg(PLAIN).query(con).unwrap();
    assert_eq!(plain, "hello", "{who}: the plain string");
    for (key, _) in before {
        let kind: String = redis::cmd("TYPE").arg(key).query(con).unwrap();
        assert_eq!(kind, "redlimit0", "{who}: TYPE {}", show(key));
    }

    set_clock_offset(con, STATUS_OFFSET);
    let after = statuses(con);
    let elapsed = read_at.elapsed();
    assert_eq!(after.len(), statuses_before.len(), "{who}: {after:?}");
    for ((key, old), (_, new)) in statuses_before.iter().zip(&after) {
        if let Err(diff) = old.matches_later(new, elapsed) {
            panic!("{who}: RL.STATUS {} differs: {diff}", show(key));
        }
    }
}

fn info_number(con: &mut Connection, section: &str, field: &str) -> i64 {
    info_value(con, section, field)
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .parse()
        .unwrap_or_else(|e| panic!("INFO {section} {field}: {e}"))
}

/// The server's clock in Unix microseconds (`TIME`).
fn server_micros(con: &mut Connection) -> u64 {
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(con).unwrap();
    seconds * 1_000_000 + micros
}

// ---------------------------------------------------------------------------------------
// RDB
// ---------------------------------------------------------------------------------------

#[test]
fn rdb_restart_keeps_every_limiter_exactly() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let mut con = server.connection();
        phase_one(&mut con, who);
        phase_two(&mut con, who);

        let before = snapshots(&mut con, who);
        assert_eq!(before.len(), LIMITERS.len(), "{who}: {before:?}");
        let read_at = Instant::now();
        let statuses_before = statuses(&mut con);
        let () = redis::cmd("SAVE").query(&mut con).unwrap();
        let dir = server.stop().expect("the server owns its directory");

        // Loaded by a server whose clock is 50 s later: loading must not care.
        let restarted = with_module(&binary)
            .module_args(["clock-offset-ms", LATER_OFFSET])
            .dir(dir.path())
            .start();
        let mut con = restarted.connection();
        assert_same_keyspace(&mut con, who, &before, &statuses_before, read_at);

        // PTTL agrees with the absolute expiry and the server clock.
        for (key, snap) in &before {
            let (pttl, now_ms): (i64, (u64, u64)) = redis::pipe()
                .atomic()
                .cmd("PTTL")
                .arg(key)
                .cmd("TIME")
                .query(&mut con)
                .unwrap();
            let now_ms = i64::try_from(now_ms.0 * 1_000 + now_ms.1 / 1_000).unwrap();
            let expected = snap.expire_at_ms - now_ms;
            assert!(
                (expected - 2..=expected + 1).contains(&pttl),
                "{who}: PTTL {} = {pttl}, PEXPIRETIME - now = {expected}",
                show(key)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// AOF
// ---------------------------------------------------------------------------------------

/// When the AOF is rewritten, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewrite {
    /// Never: every change is an `RL.SETSTATE` line of the incremental file; the server
    /// is then killed (a crash), not stopped.
    Never,
    /// `BGREWRITEAOF` between the two phases: the base file holds phase one (as an RDB
    /// preamble, or as `RL.SETSTATE` lines written by the type's `aof_rewrite`), the
    /// incremental file phase two.
    BetweenPhases,
}

/// The base and incremental files the AOF manifest lists (history files left out).
struct AofFiles {
    base: Vec<u8>,
    base_name: String,
    incr: Vec<u8>,
}

fn aof_files(dir: &Path) -> AofFiles {
    let aof_dir = dir.join("appendonlydir");
    let manifest = fs::read_to_string(aof_dir.join("appendonly.aof.manifest"))
        .unwrap_or_else(|e| panic!("no AOF manifest in {}: {e}", aof_dir.display()));
    let mut files = AofFiles {
        base: Vec::new(),
        base_name: String::new(),
        incr: Vec::new(),
    };
    for line in manifest.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let field = |name: &str| {
            words
                .iter()
                .position(|w| *w == name)
                .and_then(|i| words.get(i + 1))
                .copied()
        };
        let (Some(file), Some(kind)) = (field("file"), field("type")) else {
            continue;
        };
        let contents = fs::read(aof_dir.join(file))
            .unwrap_or_else(|e| panic!("cannot read {file} listed in the manifest: {e}"));
        match kind {
            "b" => {
                files.base = contents;
                files.base_name = file.to_owned();
            }
            "i" => files.incr.extend(contents),
            _ => {}
        }
    }
    assert!(!files.base_name.is_empty(), "no base file in {manifest}");
    files
}

/// Occurrences of `needle` in `haystack`, ignoring ASCII case.
fn count(haystack: &[u8], needle: &str) -> usize {
    haystack
        .windows(needle.len())
        .filter(|window| window.eq_ignore_ascii_case(needle.as_bytes()))
        .count()
}

fn assert_aof_restart_reproduces_state(preamble: bool, rewrite: Rewrite) {
    let preamble_arg = if preamble { "yes" } else { "no" };
    let aof_args = [
        "--appendonly",
        "yes",
        "--aof-use-rdb-preamble",
        preamble_arg,
        "--appendfsync",
        "always",
    ];
    for binary in servers() {
        let who = &format!(
            "{} (aof-use-rdb-preamble {preamble_arg}, rewrite {rewrite:?})",
            binary.name()
        );
        let server = with_module(&binary).args(aof_args).start();
        let mut con = server.connection();
        let first = phase_one(&mut con, who);
        if rewrite == Rewrite::BetweenPhases {
            let _: Value = redis::cmd("BGREWRITEAOF").query(&mut con).unwrap();
            server.wait_for_background_saves();
        }
        let second = phase_two(&mut con, who);

        // What the AOF holds: resulting states, never a time-dependent command.
        let files = aof_files(server.dir());
        let all = [files.base.as_slice(), files.incr.as_slice()].concat();
        for command in ["RL.TOKENBUCKET", "RL.THROTTLE"] {
            assert_eq!(count(&all, command), 0, "{who}: the AOF holds {command}");
        }
        let (base_setstate, incr_setstate, incr_reset) = match rewrite {
            Rewrite::Never => (0, (first + second).setstate, first.reset),
            Rewrite::BetweenPhases if preamble => (0, second.setstate, 0),
            Rewrite::BetweenPhases => (PHASE_ONE_LIMITERS, second.setstate, 0),
        };
        assert_eq!(
            count(&files.base, "RL.SETSTATE"),
            base_setstate,
            "{who}: RL.SETSTATE in the base file {}",
            files.base_name
        );
        assert_eq!(
            count(&files.incr, "RL.SETSTATE"),
            incr_setstate,
            "{who}: RL.SETSTATE in the incremental file (one per allowed call)"
        );
        assert_eq!(
            count(&files.incr, "RL.RESET"),
            incr_reset,
            "{who}: RL.RESET"
        );
        if rewrite == Rewrite::BetweenPhases {
            if preamble {
                assert!(
                    files.base_name.ends_with(".rdb")
                        && (files.base.starts_with(b"REDIS") || files.base.starts_with(b"VALKEY")),
                    "{who}: the base file {} is not an RDB preamble",
                    files.base_name
                );
            } else {
                assert_eq!(
                    count(&files.base, "PEXPIREAT"),
                    PHASE_ONE_LIMITERS,
                    "{who}: the rewrite gives each limiter its absolute expiry"
                );
            }
        }

        let before = snapshots(&mut con, who);
        assert_eq!(before.len(), LIMITERS.len(), "{who}: {before:?}");
        let read_at = Instant::now();
        let statuses_before = statuses(&mut con);
        let dir = match rewrite {
            Rewrite::Never => server.kill(),
            Rewrite::BetweenPhases => server.stop(),
        }
        .expect("the server owns its directory");

        // Replayed by a server whose clock is 50 s later.
        let restarted = with_module(&binary)
            .module_args(["clock-offset-ms", LATER_OFFSET])
            .args(aof_args)
            .dir(dir.path())
            .start();
        let mut con = restarted.connection();
        assert_eq!(
            info_value(&mut con, "redlimit", "redlimit_tokenbucket_calls").as_deref(),
            Some("0"),
            "{who}: the replay ran RL.TOKENBUCKET"
        );
        assert_eq!(
            info_value(&mut con, "redlimit", "redlimit_throttle_calls").as_deref(),
            Some("0"),
            "{who}: the replay ran RL.THROTTLE"
        );
        assert_eq!(
            info_number(&mut con, "redlimit", "redlimit_setstate_calls"),
            i64::try_from(base_setstate + incr_setstate).unwrap(),
            "{who}: RL.SETSTATE commands replayed"
        );
        let offset: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("redlimit.clock-offset-ms")
            .query(&mut con)
            .unwrap();
        assert_eq!(offset, ["redlimit.clock-offset-ms", LATER_OFFSET], "{who}");
        assert_same_keyspace(&mut con, who, &before, &statuses_before, read_at);
    }
}

#[test]
fn aof_with_preamble_without_rewrite_survives_a_crash_exactly() {
    assert_aof_restart_reproduces_state(true, Rewrite::Never);
}

#[test]
fn aof_without_preamble_without_rewrite_survives_a_crash_exactly() {
    assert_aof_restart_reproduces_state(false, Rewrite::Never);
}

#[test]
fn aof_with_preamble_rewritten_restarts_exactly() {
    assert_aof_restart_reproduces_state(true, Rewrite::BetweenPhases);
}

#[test]
fn aof_without_preamble_rewritten_restarts_exactly() {
    assert_aof_restart_reproduces_state(false, Rewrite::BetweenPhases);
}

/// Two limiters: the same policy and usage, apart from when it was measured.
fn same_usage(a: &Limiter, b: &Limiter) -> bool {
    match (a, b) {
        (Limiter::TokenBucket(p, s), Limiter::TokenBucket(q, t)) => {
            p == q && s.deficit == t.deficit
        }
        (Limiter::Throttle(p, _), Limiter::Throttle(q, _)) => p == q,
        _ => false,
    }
}

/// Calls `key` and a never-used key with the same policy in one transaction, and
/// checks both answer and store the same thing: `key` reads as a fresh key.
fn assert_reads_as_fresh(con: &mut Connection, who: &str, key: &[u8], name: &str, args: &str) {
    let fresh = [b"fresh:".as_slice(), key].concat();
    let (old_reply, fresh_reply): (Vec<i64>, Vec<i64>) = redis::pipe()
        .atomic()
        .add_command(command(name, key, args))
        .add_command(command(name, &fresh, args))
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: {name} {}: {e}", show(key)));
    assert_eq!(
        old_reply,
        fresh_reply,
        "{who}: {name} {} {args} on an idle key and on a fresh key",
        show(key)
    );
    let old = Limiter::decode(&stored_state(con, key).unwrap()).unwrap();
    let new = Limiter::decode(&stored_state(con, &fresh).unwrap()).unwrap();
    assert!(
        same_usage(&old, &new),
        "{who}: {} stored {old:?}, a fresh key {new:?}",
        show(key)
    );
}

#[test]
fn aof_replayed_a_month_later_gives_the_same_state_which_reads_as_fresh() {
    const MONTH_MS: &str = "2592000000";
    for binary in servers() {
        let who = binary.name();
        let aof_args = ["--appendonly", "yes", "--aof-use-rdb-preamble", "no"];
        let server = with_module(&binary).args(aof_args).start();
        let mut con = server.connection();
        phase_one(&mut con, who);
        phase_two(&mut con, who);
        let before = snapshots(&mut con, who);
        let dir = server.stop().expect("the server owns its directory");

        let restarted = with_module(&binary)
            .module_args(["clock-offset-ms", MONTH_MS])
            .args(aof_args)
            .dir(dir.path())
            .start();
        let mut con = restarted.connection();
        assert_eq!(
            snapshots(&mut con, who),
            before,
            "{who}: replay changed a state"
        );
        for (key, name, args) in LIMITERS {
            let report = status(&mut con, key).unwrap();
            assert_eq!(
                report.number("allowed"),
                1,
                "{who}: {} a month later: {report:?}",
                show(key)
            );
            assert_reads_as_fresh(&mut con, who, key, name, args);
        }
    }
}

// ---------------------------------------------------------------------------------------
// DEBUG RELOAD, DUMP/RESTORE, COPY, RENAME, MEMORY USAGE, TYPE
// ---------------------------------------------------------------------------------------

#[test]
fn debug_reload_keeps_every_limiter_exactly() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let mut con = server.connection();
        phase_one(&mut con, who);
        phase_two(&mut con, who);
        let before = snapshots(&mut con, who);
        assert_eq!(before.len(), LIMITERS.len(), "{who}");
        let read_at = Instant::now();
        let statuses_before = statuses(&mut con);

        let () = redis::cmd("DEBUG")
            .arg("RELOAD")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("{who}: DEBUG RELOAD: {e}"));

        assert_same_keyspace(&mut con, who, &before, &statuses_before, read_at);
    }
}

/// Redis's CRC64 (Jones polynomial, reflected, no final xor), which ends DUMP payloads.
fn crc64(bytes: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5;
    bytes.iter().fold(0u64, |crc, &byte| {
        (0..8).fold(crc ^ u64::from(byte), |crc, _| {
            if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            }
        })
    })
}

/// A DUMP payload of a redlimit key with its state replaced by `state` (shorter than 64
/// bytes) and a correct checksum: `[7, 0x81, type id (8), 5, len, state, 0, version (2),
/// crc (8)]`.
fn payload_with_state(original: &[u8], state: &[u8]) -> Vec<u8> {
    assert!(state.len() < 64);
    let version = &original[original.len() - 10..original.len() - 8];
    let mut payload = original[..11].to_vec();
    payload.push(u8::try_from(state.len()).unwrap());
    payload.extend_from_slice(state);
    payload.push(0);
    payload.extend_from_slice(version);
    let crc = crc64(&payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    payload
}

#[test]
fn crc64_is_redis_crc64() {
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
}

#[test]
fn dump_restore_round_trips_within_and_across_servers() {
    for binary in servers() {
        let who = binary.name();
        let source = with_module(&binary).start();
        let target = with_module(&binary).start();
        let mut con = source.connection();
        let mut other = target.connection();
        phase_one(&mut con, who);
        phase_two(&mut con, who);

        for (key, name, args) in LIMITERS {
            let snap = snapshot(&mut con, key).unwrap();
            let payload: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut con).unwrap();

            // Into another key, without and with the absolute expiry.
            let plain_copy = [b"restored:".as_slice(), key].concat();
            let () = redis::cmd("RESTORE")
                .arg(&plain_copy)
                .arg(0)
                .arg(&payload)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("{who}: RESTORE {}: {e}", show(key)));
            let restored = snapshot(&mut con, &plain_copy).unwrap();
            // (DEBUG DIGEST-VALUE mixes in whether the key has an expiry, so it differs.)
            assert_eq!(
                (restored.state, restored.expire_at_ms),
                (snap.state.clone(), -1),
                "{who}: RESTORE {} with TTL 0 keeps the state, without expiry",
                show(key)
            );
            let timed_copy = [b"restored-abs:".as_slice(), key].concat();
            let () = redis::cmd("RESTORE")
                .arg(&timed_copy)
                .arg(snap.expire_at_ms)
                .arg(&payload)
                .arg("ABSTTL")
                .query(&mut con)
                .unwrap();
            assert_eq!(
                snapshot(&mut con, &timed_copy).as_ref(),
                Some(&snap),
                "{who}"
            );

            // Into a second server of the same flavor.
            let () = redis::cmd("RESTORE")
                .arg(key)
                .arg(snap.expire_at_ms)
                .arg(&payload)
                .arg("ABSTTL")
                .query(&mut other)
                .unwrap_or_else(|e| panic!("{who}: RESTORE {} on a second server: {e}", show(key)));
            assert_eq!(
                snapshot(&mut other, key).as_ref(),
                Some(&snap),
                "{who}: {} on the second server",
                show(key)
            );
            let kind: String = redis::cmd("TYPE").arg(key).query(&mut other).unwrap();
            assert_eq!(kind, "redlimit0", "{who}");

            // Both servers then decide the same under the same clock.
            set_clock_offset(&mut other, STATUS_OFFSET);
            let here = decide(&mut con, who, name, key, args);
            let there = decide(&mut other, who, name, key, args);
            assert_eq!(
                here[..3],
                there[..3],
                "{who}: {name} {} after RESTORE: {here:?} vs {there:?}",
                show(key)
            );
        }

        // MIGRATE (COPY, into database 1 of the second server) carries state and expiry.
        let snap = snapshot(&mut con, UPGRADE).unwrap();
        let migrated: String = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(target.port())
            .arg(UPGRADE)
            .arg(1)
            .arg(5_000)
            .arg("COPY")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("{who}: MIGRATE: {e}"));
        assert_eq!(migrated, "OK", "{who}: MIGRATE");
        let mut db1 = target.connection();
        let () = redis::cmd("SELECT").arg(1).query(&mut db1).unwrap();
        // MIGRATE sends a relative TTL, so the server's own clock may shift the expiry by
        // a few milliseconds; the state itself is carried exactly.
        let moved = snapshot(&mut db1, UPGRADE).unwrap();
        assert_eq!(
            (&moved.state, &moved.digest),
            (&snap.state, &snap.digest),
            "{who}: MIGRATE"
        );
        assert!(
            (moved.expire_at_ms - snap.expire_at_ms).abs() <= 50,
            "{who}: MIGRATE moved the expiry from {} to {}",
            snap.expire_at_ms,
            moved.expire_at_ms
        );

        // A payload rebuilt with the same state restores (the rebuilding is right)...
        let payload: Vec<u8> = redis::cmd("DUMP").arg(BASIC).query(&mut con).unwrap();
        let state = stored_state(&mut con, BASIC).unwrap();
        let rebuilt = payload_with_state(&payload, &state);
        assert_eq!(rebuilt, payload, "{who}: payload layout");
        // ...and one carrying bytes that are not a state is refused, not loaded.
        let mut unknown_version = state.clone();
        unknown_version[0] = 2;
        let mut zero_capacity = state.clone();
        zero_capacity[2] = 0;
        let bad_states = [
            ("unknown version", unknown_version),
            ("capacity 0", zero_capacity),
            ("truncated", state[..state.len() - 1].to_vec()),
            ("trailing byte", [state.as_slice(), &[0]].concat()),
        ];
        for (what, bad) in bad_states {
            assert!(Limiter::decode(&bad).is_err(), "{what}: {bad:?} decodes");
            let reply: redis::RedisResult<()> = redis::cmd("RESTORE")
                .arg(b"bad")
                .arg(0)
                .arg(payload_with_state(&payload, &bad))
                .query(&mut con);
            let error = reply.expect_err(&format!("{who}: RESTORE of a state with {what}"));
            assert!(
                error.to_string().contains("Bad data format"),
                "{who}: RESTORE with {what}: {error}"
            );
            let exists: i64 = redis::cmd("EXISTS").arg(b"bad").query(&mut con).unwrap();
            assert_eq!(exists, 0, "{who}: RESTORE with {what} created the key");
        }
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG", "{who}");
    }
}

#[test]
fn copy_rename_memory_usage_and_type_work_on_limiters() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let mut con = server.connection();
        phase_one(&mut con, who);
        phase_two(&mut con, who);

        for (key, _, _) in LIMITERS {
            let kind: String = redis::cmd("TYPE").arg(key).query(&mut con).unwrap();
            assert_eq!(kind, "redlimit0", "{who}: TYPE {}", show(key));
            let usage: Value = redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query(&mut con)
                .unwrap();
            assert!(
                matches!(usage, Value::Int(n) if n > 0),
                "{who}: MEMORY USAGE {} = {usage:?}",
                show(key)
            );
        }

        // COPY: same state and expiry, then two independent limiters.
        let original = snapshot(&mut con, BASIC).unwrap();
        let copied: i64 = redis::cmd("COPY")
            .arg(BASIC)
            .arg(b"copy")
            .query(&mut con)
            .unwrap();
        assert_eq!(copied, 1, "{who}: COPY");
        assert_eq!(
            snapshot(&mut con, b"copy").as_ref(),
            Some(&original),
            "{who}: COPY"
        );
        let again: i64 = redis::cmd("COPY")
            .arg(BASIC)
            .arg(b"copy")
            .query(&mut con)
            .unwrap();
        assert_eq!(again, 0, "{who}: COPY onto an existing key without REPLACE");
        let reply = tokenbucket(&mut con, who, b"copy", "10 1 60000 COST 3");
        assert_eq!(
            reply[..4],
            [1, 10, 3, 0],
            "{who}: the copy has the original's usage"
        );
        assert_eq!(
            snapshot(&mut con, BASIC).as_ref(),
            Some(&original),
            "{who}: using the copy changed the original"
        );
        let status_copy = status(&mut con, b"copy").unwrap();
        assert_eq!(status_copy.number("remaining"), 2, "{who}: {status_copy:?}");

        // RENAME: the state and expiry move with the name.
        let moved = snapshot(&mut con, BORROW).unwrap();
        let () = redis::cmd("RENAME")
            .arg(BORROW)
            .arg(b"renamed")
            .query(&mut con)
            .unwrap();
        assert_eq!(
            snapshot(&mut con, b"renamed").as_ref(),
            Some(&moved),
            "{who}: RENAME"
        );
        assert_eq!(
            status(&mut con, BORROW),
            None,
            "{who}: the old name still exists"
        );
        let reply = tokenbucket(&mut con, who, b"renamed", "5 5 10000");
        assert_eq!(
            reply[..3],
            [0, 5, 0],
            "{who}: the renamed bucket is still in debt"
        );
    }
}

// ---------------------------------------------------------------------------------------
// RL.SETSTATE: validation and old states
// ---------------------------------------------------------------------------------------

/// A token bucket of 10 tokens, one a minute, missing `tokens` at `at_micros`.
fn bucket(tokens: u64, at_micros: u64) -> Limiter {
    const UNITS_PER_TOKEN: u64 = 60_000 * 1_000;
    Limiter::TokenBucket(
        TokenBucket::new(10, 1, 60_000).unwrap(),
        BucketState {
            deficit: tokens * UNITS_PER_TOKEN,
            at: Timestamp::from_micros(at_micros),
        },
    )
}

fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out
}

/// Deterministic pseudo-random bytes (xorshift64).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn setstate(con: &mut Connection, key: &[u8], state: &[u8]) -> redis::RedisResult<()> {
    redis::cmd("RL.SETSTATE").arg(key).arg(state).query(con)
}

#[test]
fn setstate_refuses_bytes_that_are_not_a_state_and_keeps_the_key() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let mut con = server.connection();
        let now = server_micros(&mut con);

        let valid = bucket(3, now).encode();
        setstate(&mut con, b"k", &valid).unwrap_or_else(|e| panic!("{who}: {e}"));
        let kept = snapshot(&mut con, b"k").unwrap();
        assert_eq!(
            kept.state, valid,
            "{who}: SETSTATE stores the bytes as they are"
        );
        assert_expiry_follows_state(&kept, who);
        let report = status(&mut con, b"k").unwrap();
        assert_eq!(
            (report.number("limit"), report.number("remaining")),
            (10, 6),
            "{who}: {report:?}"
        );

        let policy_then_state = |numbers: &[u64]| -> Vec<u8> {
            let mut bytes = vec![1, 1];
            for &n in numbers {
                bytes.extend(varint(n));
            }
            bytes
        };
        let mut garbage: Vec<(String, Vec<u8>)> = vec![
            ("empty".into(), Vec::new()),
            (
                "unknown version 0".into(),
                [&[0u8][..], &valid[1..]].concat(),
            ),
            (
                "unknown version 2".into(),
                [&[2u8][..], &valid[1..]].concat(),
            ),
            (
                "unknown version 255".into(),
                [&[255u8][..], &valid[1..]].concat(),
            ),
            (
                "unknown algorithm".into(),
                [&[1u8, 9][..], &valid[2..]].concat(),
            ),
            ("trailing byte".into(), [valid.as_slice(), &[0]].concat()),
            (
                "capacity 0".into(),
                policy_then_state(&[0, 1, 60_000, 0, now]),
            ),
            (
                "refill_tokens 0".into(),
                policy_then_state(&[10, 0, 60_000, 0, now]),
            ),
            ("refill_ms 0".into(), policy_then_state(&[10, 1, 0, 0, now])),
            ("throttle count 0".into(), vec![1, 2, 4, 0, 60, 0]),
            (
                "varint over 64 bits".into(),
                [&[1u8, 2, 4, 1, 60][..], &[0xff; 10], &[0x7f]].concat(),
            ),
        ];
        for len in 0..valid.len() {
            garbage.push((format!("truncated to {len} bytes"), valid[..len].to_vec()));
        }
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for i in 0..300 {
            let len = usize::try_from(noise.next() % 40).unwrap();
            let mut bytes = noise.bytes(len);
            // Most random strings fail on the version byte; reach the numbers too.
            if i % 2 == 0 && bytes.len() >= 2 {
                bytes[0] = 1;
                bytes[1] = 1 + u8::from(i % 4 == 0);
            }
            garbage.push((format!("random bytes #{i}"), bytes));
        }

        let mut refused = 0;
        for (what, bytes) in &garbage {
            if Limiter::decode(bytes).is_ok() {
                // Random bytes that happen to be a state are accepted like one.
                let reply = setstate(&mut con, b"accepted", bytes);
                assert!(
                    reply.is_ok(),
                    "{who}: {what} {bytes:?} is a state: {reply:?}"
                );
                continue;
            }
            refused += 1;
            for key in [b"k".as_slice(), b"absent"] {
                let error = setstate(&mut con, key, bytes)
                    .expect_err(&format!("{who}: RL.SETSTATE with {what} {bytes:?}"));
                assert_eq!(error.code(), Some("ERR"), "{who}: {what}: {error}");
                assert!(
                    error.to_string().contains("state must be a redlimit state"),
                    "{who}: {what}: {error}"
                );
            }
            assert_eq!(
                snapshot(&mut con, b"k").as_ref(),
                Some(&kept),
                "{who}: RL.SETSTATE with {what} changed the key"
            );
            assert_eq!(
                snapshot(&mut con, b"absent"),
                None,
                "{who}: RL.SETSTATE with {what} created a key"
            );
        }
        assert!(refused > 250, "{who}: only {refused} inputs were refused");

        // A key of another type.
        let () = redis::cmd("SET").arg("s").arg("v").query(&mut con).unwrap();
        let error = setstate(&mut con, b"s", &valid).expect_err("SETSTATE on a string");
        assert_eq!(error.code(), Some("WRONGTYPE"), "{who}: {error}");
        let value: String = redis::cmd("GET").arg("s").query(&mut con).unwrap();
        assert_eq!(value, "v", "{who}: SETSTATE on a string changed it");
        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG", "{who}");
    }
}

#[test]
fn a_state_whose_idle_moment_has_passed_reads_as_a_fresh_key() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let mut con = server.connection();
        let now = server_micros(&mut con);

        // Idle since 1970: its expiry has passed too, so the key is simply gone.
        let ancient = bucket(1, 1_000_000).encode();
        setstate(&mut con, b"ancient", &ancient).unwrap();
        let reply = tokenbucket(&mut con, who, b"live", "10 1 60000 COST 5");
        assert_eq!(reply[..3], [1, 10, 5], "{who}");
        setstate(&mut con, b"live", &ancient).unwrap();
        for key in [b"ancient".as_slice(), b"live"] {
            let exists: i64 = redis::cmd("EXISTS").arg(key).query(&mut con).unwrap();
            assert_eq!(
                exists,
                0,
                "{who}: {} holds a state idle since 1970",
                show(key)
            );
            assert_eq!(
                status(&mut con, key),
                None,
                "{who}: RL.STATUS {}",
                show(key)
            );
            let reply = tokenbucket(&mut con, who, key, "10 1 60000");
            assert_eq!(
                reply,
                [1, 10, 9, 0, 60_000],
                "{who}: {} is fresh",
                show(key)
            );
        }

        // Idle for the module's clock (moved 2 minutes ahead), while the server's own
        // clock has not reached the key's expiry yet: the key exists and reads as fresh.
        let recent = bucket(1, now - 10_000_000).encode();
        setstate(&mut con, b"idle", &recent).unwrap();
        let pttl: i64 = redis::cmd("PTTL").arg(b"idle").query(&mut con).unwrap();
        assert!(
            (45_000..=50_001).contains(&pttl),
            "{who}: one token of one a minute, taken 10 s ago: PTTL {pttl}"
        );
        set_clock_offset(&mut con, 120_000);
        let report = status(&mut con, b"idle").unwrap();
        let peek_fresh = tokenbucket(&mut con, who, b"never-used", "10 1 60000 PEEK");
        let fields = [
            "allowed",
            "limit",
            "remaining",
            "retry_after_ms",
            "reset_after_ms",
        ];
        let reported: Vec<i64> = fields.iter().map(|f| report.number(f)).collect();
        assert_eq!(reported, peek_fresh, "{who}: RL.STATUS of an idle key");
        assert_reads_as_fresh(&mut con, who, b"idle", "RL.TOKENBUCKET", "10 1 60000");
    }
}
