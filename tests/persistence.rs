//! Limiter state survives every way a server persists, reloads or moves a key: RDB
//! restart, AOF restart (with and without the RDB preamble, with and without a rewrite,
//! clean stop and crash), `DEBUG RELOAD`, `DUMP`/`RESTORE`, `MIGRATE`, `COPY`, `RENAME`.
//! Reloading at a later clock never re-runs a decision: the stored bytes, the digest and
//! the absolute expiry stay identical. This holds for every kind of limiter: token
//! buckets, throttles, exact sliding logs, APPROX counters, fixed windows, the several
//! keys one `RL.ALL` writes, and leases. `RL.SETSTATE` refuses anything that is not a
//! valid state.
//!
//! Every test runs against every server found by `available_servers()`; build the module
//! first (`cargo build -p redlimit-module`). Time moves with the module's clock offset,
//! never with sleeps.

#[path = "live/calls.rs"]
mod calls;
#[path = "persistence/setstate.rs"]
mod setstate;
#[path = "persistence/workload.rs"]
mod workload;

use std::fs;
use std::path::Path;
use std::time::Instant;

use redis::Value;
use redlimit_core::Limiter;
use redlimit_test_support::{info_value, status};

use workload::{
    BASIC, BORROW, Clock, DAY_MS, LATER_OFFSET, LEASES, LIMITERS, LOG, STATUS_OFFSET, UPGRADE,
    assert_reads_as_fresh, assert_same_keyspace, decide, info_number, phase_one, phase_two,
    server_micros, servers, show, snapshot, snapshots, statuses, stored_state, tokenbucket,
    with_module,
};

// ---------------------------------------------------------------------------------------
// RDB
// ---------------------------------------------------------------------------------------

#[test]
fn rdb_restart_keeps_every_limiter_exactly() {
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let mut con = server.connection();
        let clock = Clock::aligned(&mut con);
        phase_one(&mut con, who, clock);
        phase_two(&mut con, who, clock);

        let before = snapshots(&mut con, who);
        assert_eq!(before.len(), LIMITERS.len(), "{who}: {before:?}");
        let read_at = Instant::now();
        let statuses_before = statuses(&mut con);
        let () = redis::cmd("SAVE").query(&mut con).unwrap();
        let dir = server.stop().expect("the server owns its directory");

        // Loaded by a server whose clock is 50 s later: loading must not care.
        let restarted = with_module(&binary)
            .module_args(["clock-offset-ms".to_owned(), clock.arg(LATER_OFFSET)])
            .dir(dir.path())
            .start();
        let mut con = restarted.connection();
        assert_same_keyspace(&mut con, who, clock, &before, &statuses_before, read_at);

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

/// The commands that decide with the clock: replication and the AOF must never carry
/// them, only the states they leave.
const DECIDING_COMMANDS: [&str; 7] = [
    "RL.TOKENBUCKET",
    "RL.THROTTLE",
    "RL.SLIDING",
    "RL.FIXED",
    "RL.ALL",
    "RL.ACQUIRE",
    "RL.RELEASE",
];

/// `INFO redlimit` counters of the commands that decide with the clock.
const DECIDING_COUNTERS: [&str; 7] = [
    "redlimit_tokenbucket_calls",
    "redlimit_throttle_calls",
    "redlimit_sliding_calls",
    "redlimit_fixed_calls",
    "redlimit_all_calls",
    "redlimit_acquire_calls",
    "redlimit_release_calls",
];

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
        let clock = Clock::aligned(&mut con);
        let first = phase_one(&mut con, who, clock);
        let mut rewritten = 0;
        if rewrite == Rewrite::BetweenPhases {
            rewritten = snapshots(&mut con, who).len();
            let _: Value = redis::cmd("BGREWRITEAOF").query(&mut con).unwrap();
            server.wait_for_background_saves();
        }
        let second = phase_two(&mut con, who, clock);

        // What the AOF holds: resulting states, never a time-dependent command.
        let files = aof_files(server.dir());
        let all = [files.base.as_slice(), files.incr.as_slice()].concat();
        for command in DECIDING_COMMANDS {
            assert_eq!(count(&all, command), 0, "{who}: the AOF holds {command}");
        }
        let (base_setstate, incr) = match rewrite {
            Rewrite::Never => (0, first + second),
            Rewrite::BetweenPhases if preamble => (0, second),
            Rewrite::BetweenPhases => (rewritten, second),
        };
        assert_eq!(
            count(&files.base, "RL.SETSTATE"),
            base_setstate,
            "{who}: RL.SETSTATE in the base file {}",
            files.base_name
        );
        assert_eq!(
            count(&files.incr, "RL.SETSTATE"),
            incr.setstate,
            "{who}: RL.SETSTATE in the incremental file (one per key an allowed call changed)"
        );
        assert_eq!(
            count(&files.incr, "RL.RESET"),
            incr.reset,
            "{who}: RL.RESET"
        );
        assert_eq!(
            count(&files.incr, "\r\nDEL\r\n"),
            incr.delete,
            "{who}: DEL (RL.RELEASE of a key's last lease)"
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
                    rewritten,
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
            .module_args(["clock-offset-ms".to_owned(), clock.arg(LATER_OFFSET)])
            .args(aof_args)
            .dir(dir.path())
            .start();
        let mut con = restarted.connection();
        for counter in DECIDING_COUNTERS {
            assert_eq!(
                info_value(&mut con, "redlimit", counter).as_deref(),
                Some("0"),
                "{who}: the replay decided something: {counter}"
            );
        }
        assert_eq!(
            info_number(&mut con, "redlimit", "redlimit_setstate_calls"),
            i64::try_from(base_setstate + incr.setstate).unwrap(),
            "{who}: RL.SETSTATE commands replayed"
        );
        let offset: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("redlimit.clock-offset-ms")
            .query(&mut con)
            .unwrap();
        assert_eq!(
            offset,
            [
                "redlimit.clock-offset-ms".to_owned(),
                clock.arg(LATER_OFFSET)
            ],
            "{who}"
        );
        assert_same_keyspace(&mut con, who, clock, &before, &statuses_before, read_at);
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

#[test]
fn aof_replayed_a_month_later_gives_the_same_state_which_reads_as_fresh() {
    const MONTH_MS: u64 = 30 * DAY_MS;
    for binary in servers() {
        let who = binary.name();
        let aof_args = ["--appendonly", "yes", "--aof-use-rdb-preamble", "no"];
        let server = with_module(&binary).args(aof_args).start();
        let mut con = server.connection();
        let clock = Clock::aligned(&mut con);
        phase_one(&mut con, who, clock);
        phase_two(&mut con, who, clock);
        let before = snapshots(&mut con, who);
        let dir = server.stop().expect("the server owns its directory");

        let restarted = with_module(&binary)
            .module_args(["clock-offset-ms".to_owned(), clock.arg(MONTH_MS)])
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
            // Idle a month later: an absent key, whether or not the server removed it.
            assert!(
                status(&mut con, key).is_none(),
                "{who}: {} a month later",
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
        let clock = Clock::aligned(&mut con);
        phase_one(&mut con, who, clock);
        phase_two(&mut con, who, clock);
        let before = snapshots(&mut con, who);
        assert_eq!(before.len(), LIMITERS.len(), "{who}");
        let read_at = Instant::now();
        let statuses_before = statuses(&mut con);

        let () = redis::cmd("DEBUG")
            .arg("RELOAD")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("{who}: DEBUG RELOAD: {e}"));

        assert_same_keyspace(&mut con, who, clock, &before, &statuses_before, read_at);
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
        let clock = Clock::aligned(&mut con);
        phase_one(&mut con, who, clock);
        phase_two(&mut con, who, clock);

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
            clock.set(&mut other, STATUS_OFFSET);
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
        let mut db1 = target.connection();
        let () = redis::cmd("SELECT").arg(1).query(&mut db1).unwrap();
        for key in [UPGRADE, LOG, LEASES] {
            let snap = snapshot(&mut con, key).unwrap();
            let migrated: String = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target.port())
                .arg(key)
                .arg(1)
                .arg(5_000)
                .arg("COPY")
                .query(&mut con)
                .unwrap_or_else(|e| panic!("{who}: MIGRATE {}: {e}", show(key)));
            assert_eq!(migrated, "OK", "{who}: MIGRATE {}", show(key));
            // MIGRATE sends a relative TTL, so the server's own clock may shift the expiry
            // by a few milliseconds; the state itself is carried exactly.
            let moved = snapshot(&mut db1, key).unwrap();
            assert_eq!(
                (&moved.state, &moved.digest),
                (&snap.state, &snap.digest),
                "{who}: MIGRATE {}",
                show(key)
            );
            assert!(
                (moved.expire_at_ms - snap.expire_at_ms).abs() <= 50,
                "{who}: MIGRATE {} moved the expiry from {} to {}",
                show(key),
                snap.expire_at_ms,
                moved.expire_at_ms
            );
        }

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
        let mut bad_states = vec![
            ("unknown version", unknown_version),
            ("capacity 0", zero_capacity),
            ("truncated", state[..state.len() - 1].to_vec()),
            ("trailing byte", [state.as_slice(), &[0]].concat()),
        ];
        // The other kinds: a valid state restores as it is, a malformed one is refused.
        let now_ms = server_micros(&mut con) / 1_000;
        for kind in setstate::newer_kinds(now_ms) {
            let key = format!("good:{}", kind.algorithm);
            let () = redis::cmd("RESTORE")
                .arg(&key)
                .arg(0)
                .arg(payload_with_state(&payload, &kind.valid))
                .query(&mut con)
                .unwrap_or_else(|e| panic!("{who}: RESTORE of a valid {key}: {e}"));
            assert_eq!(
                stored_state(&mut con, key.as_bytes()).as_ref(),
                Some(&kind.valid),
                "{who}: {key}"
            );
            bad_states.extend(kind.malformed);
        }
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
        let clock = Clock::aligned(&mut con);
        phase_one(&mut con, who, clock);
        phase_two(&mut con, who, clock);

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

        // Every kind: the copy holds the original's state, expiry and status, and using it
        // leaves the original as it was.
        for (key, name, args) in LIMITERS {
            let copy = [b"copy:".as_slice(), key].concat();
            let original = snapshot(&mut con, key).unwrap();
            let read_at = Instant::now();
            let original_status = status(&mut con, key).unwrap();
            let copied: i64 = redis::cmd("COPY")
                .arg(key)
                .arg(&copy)
                .query(&mut con)
                .unwrap();
            assert_eq!(copied, 1, "{who}: COPY {}", show(key));
            assert_eq!(
                snapshot(&mut con, &copy).as_ref(),
                Some(&original),
                "{who}: COPY {}",
                show(key)
            );
            let copy_status = status(&mut con, &copy).unwrap();
            if let Err(diff) = original_status.matches_later(&copy_status, read_at.elapsed()) {
                panic!("{who}: RL.STATUS of the copy of {}: {diff}", show(key));
            }
            let _ = decide(&mut con, who, name, &copy, args);
            assert_eq!(
                snapshot(&mut con, key).as_ref(),
                Some(&original),
                "{who}: using the copy of {} changed it",
                show(key)
            );
        }

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
