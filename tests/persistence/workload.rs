//! The workload every persistence test runs, and how its keys are compared: a timeline
//! of allowed, denied, PEEK, COST 0, MAXWAIT, THROTTLE, policy-change and RESET calls on
//! token buckets and throttles, and the same for exact and APPROX sliding windows, fixed
//! windows, RL.ALL over several keys and leases (RL.ACQUIRE / RL.RELEASE), in two phases
//! (so an AOF rewrite can happen in between).

pub use crate::calls::{
    acquire, assert_expiry_follows_state, command, decide, fixed, release, servers, show, sliding,
    stored, throttle, tokenbucket, with_module,
};
pub use redlimit_test_support::{snapshot, stored_state};
use std::time::Instant;

use redis::{Connection, Value};
use redlimit_core::Limiter;
use redlimit_test_support::{KeySnapshot, Status, info_value, set_clock_offset, status};

/// Token bucket, 10 tokens, one a minute (slow: nothing refills during a test).
pub const BASIC: &[u8] = b"tb:basic";
/// Token bucket used with MAXWAIT (borrowing: the state goes below zero tokens).
pub const BORROW: &[u8] = b"tb:borrow";
/// redis-cell throttle, burst 5, one a minute.
const CELL: &[u8] = b"th:cell";
/// A key that is not UTF-8.
const BINARY: &[u8] = b"bin:\xff\x00\xfe";
/// Token bucket called with a new policy (a tier upgrade keeps the usage).
pub const UPGRADE: &[u8] = b"tb:upgrade";
/// Created, then deleted with RL.RESET.
const GONE: &[u8] = b"tb:gone";
/// A plain string living next to the limiters.
const PLAIN: &[u8] = b"plain:string";

/// Exact sliding log, 100 a minute, then 40: 17 entries, several in one millisecond,
/// costs 1 to 3.
pub const LOG: &[u8] = b"sl:log";
/// Sliding-window counter (APPROX), a million a day, then two million.
const APPROX: &[u8] = b"sl:approx";
/// Fixed window of a day.
const DAY: &[u8] = b"fx:day";
/// Leases with binary ids; one expires between the phases.
pub const LEASES: &[u8] = b"lease:slots";
/// A lease key whose last lease is released in phase one: deleted.
const LEASE_GONE: &[u8] = b"lease:gone";

/// The three keys of the workload's `RL.ALL` (one hash tag), with the command and
/// policy each is decided with; in `RL.ALL` the policy is the command without `RL.`.
const ALL_MINUTE: (&[u8], &str, &str) = (b"{user:7}:minute", "RL.SLIDING", "5 60000");
const ALL_DAY: (&[u8], &str, &str) = (b"{user:7}:day", "RL.FIXED", "8 86400000");
const ALL_BIG: (&[u8], &str, &str) = (b"{user:7}:big", "RL.SLIDING", "1000 86400000 APPROX");
const ALL_KEYS: [(&[u8], &str, &str); 3] = [ALL_MINUTE, ALL_DAY, ALL_BIG];

/// Lease ids: any bytes.
const HOLDER: &[u8] = b"job\x00\xff:1";
const SECOND: &[u8] = b"job\r\n:2";
const SHORT: &[u8] = b"\xfe:short";
const ONLY: &[u8] = b"\xff\x00only";

/// The limiter keys the workload leaves, with the command and policy each was last
/// called with.
pub const LIMITERS: [(&[u8], &str, &str); 12] = [
    (BASIC, "RL.TOKENBUCKET", "10 1 60000"),
    (BORROW, "RL.TOKENBUCKET", "5 5 10000"),
    (CELL, "RL.THROTTLE", "4 1 60"),
    (BINARY, "RL.TOKENBUCKET", "3 1 60000"),
    (UPGRADE, "RL.TOKENBUCKET", "20 1 60000"),
    (LOG, "RL.SLIDING", "40 60000"),
    (APPROX, "RL.SLIDING", "2000000 86400000 APPROX"),
    (DAY, "RL.FIXED", "5 86400000"),
    ALL_MINUTE,
    ALL_DAY,
    ALL_BIG,
    (LEASES, "RL.ACQUIRE", "3 60000 holder"),
];

/// Clock offset of phase one (after the [`Clock`] base).
pub const PHASE_ONE_OFFSET: u64 = 1_000;
/// Clock offset of phase two; statuses are compared under it.
pub const STATUS_OFFSET: u64 = 2_500;
/// Clock offset a restarted server gets from its module arguments: replay happens later.
pub const LATER_OFFSET: u64 = 50_000;

/// A day, the window of the day-long limiters.
pub const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;

/// A test's module clock: offsets counted from a base that puts "now" one hour into a
/// UTC day. Fixed and APPROX windows are aligned to the epoch, so no day-long window
/// ends while a test runs, whatever the time of day it runs at.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: u64,
}

impl Clock {
    /// The base for a test starting now on this server.
    pub fn aligned(con: &mut Connection) -> Clock {
        let now_ms = server_micros(con) / 1_000;
        Clock {
            base: DAY_MS - now_ms % DAY_MS + HOUR_MS,
        }
    }

    /// The clock offset `offset_ms` after the base.
    pub fn at(self, offset_ms: u64) -> u64 {
        self.base + offset_ms
    }

    /// `offset_ms` after the base, as a module argument.
    pub fn arg(self, offset_ms: u64) -> String {
        self.at(offset_ms).to_string()
    }

    /// Moves the server's clock to `offset_ms` after the base.
    pub fn set(self, con: &mut Connection, offset_ms: u64) {
        set_clock_offset(con, self.at(offset_ms));
    }
}

/// What a phase propagated: `RL.SETSTATE`, `RL.RESET` and `DEL` commands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub setstate: usize,
    pub reset: usize,
    pub delete: usize,
}

impl std::ops::Add for Written {
    type Output = Written;
    fn add(self, other: Written) -> Written {
        Written {
            setstate: self.setstate + other.setstate,
            reset: self.reset + other.reset,
            delete: self.delete + other.delete,
        }
    }
}

/// `RL.ALL` over [`ALL_KEYS`] with their policies, then `options`: the overall
/// `allowed`, and each key's decision reply.
fn all_of(con: &mut Connection, who: &str, options: &str) -> (i64, Vec<Vec<i64>>) {
    let mut cmd = redis::cmd("RL.ALL");
    cmd.arg(ALL_KEYS.len());
    for (key, _, _) in ALL_KEYS {
        cmd.arg(key);
    }
    for (_, name, args) in ALL_KEYS {
        cmd.arg(name.trim_start_matches("RL."));
        cmd.arg(args.split_whitespace().collect::<Vec<_>>());
    }
    cmd.arg(options.split_whitespace().collect::<Vec<_>>());
    let reply: Vec<Value> = cmd
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: RL.ALL {options}: {e}"));
    let allowed: i64 = redis::from_redis_value(&reply[0]).unwrap();
    let decisions = reply[1..]
        .iter()
        .map(|decision| redis::from_redis_value(decision).unwrap())
        .collect();
    (allowed, decisions)
}

/// `RL.ALL` as [`all_of`], keeping of each key's decision only `remaining`.
fn all_remaining(con: &mut Connection, who: &str, options: &str) -> (i64, Vec<i64>) {
    let (allowed, decisions) = all_of(con, who, options);
    (
        allowed,
        decisions.iter().map(|decision| decision[2]).collect(),
    )
}

/// Phase one, at clock offset [`PHASE_ONE_OFFSET`] (then up to 70 ms later, for the
/// sliding log): every kind of call, asserting replies.
pub fn phase_one(con: &mut Connection, who: &str, clock: Clock) -> Written {
    clock.set(con, PHASE_ONE_OFFSET);
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
    let expected_pttl = i64::try_from(60_000 + clock.at(PHASE_ONE_OFFSET)).unwrap();
    assert!(
        (expected_pttl - 10..=expected_pttl + 1).contains(&pttl),
        "{who}: PTTL {pttl} right after a call that resets in 60000 ms at offset {}",
        clock.at(PHASE_ONE_OFFSET)
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
        "{who}: PTTL {pttl} right after a THROTTLE that resets in 60 s at offset {}",
        clock.at(PHASE_ONE_OFFSET)
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

    written = written + windows_phase_one(con, who);
    written = written + leases_phase_one(con, who);
    written + sliding_log_phase_one(con, who, clock)
}

/// The fixed window, the APPROX counter and RL.ALL in phase one. The clock stands one
/// hour (and a second) into a UTC day: the day's window ends in 23 hours.
fn windows_phase_one(con: &mut Connection, who: &str) -> Written {
    let mut written = Written::default();
    let to_day_end = i64::try_from(DAY_MS - HOUR_MS - PHASE_ONE_OFFSET).unwrap();
    let day_end = to_day_end - 60_000..=to_day_end;

    let reply = fixed(con, who, DAY, "5 86400000 COST 3");
    assert_eq!(reply[..4], [1, 5, 2, 0], "{who}: RL.FIXED {reply:?}");
    assert!(day_end.contains(&reply[4]), "{who}: RL.FIXED {reply:?}");
    written.setstate += 1;
    let reply = fixed(con, who, DAY, "5 86400000 COST 3");
    assert_eq!(reply[..3], [0, 5, 2], "{who}: RL.FIXED denied {reply:?}");
    assert_eq!(
        reply[3], reply[4],
        "{who}: retry when the window ends {reply:?}"
    );
    let reply = fixed(con, who, DAY, "5 86400000 COST 2 PEEK");
    assert_eq!(reply[..4], [1, 5, 0, 0], "{who}: RL.FIXED PEEK {reply:?}");

    // APPROX: this window's count weighs until the end of the next one.
    let reply = sliding(con, who, APPROX, "1000000 86400000 COST 1000 APPROX");
    assert_eq!(reply[..4], [1, 1_000_000, 999_000, 0], "{who}: {reply:?}");
    let one_day = i64::try_from(DAY_MS).unwrap();
    assert!(
        day_end.contains(&(reply[4] - one_day)),
        "{who}: APPROX reset_after {reply:?}"
    );
    written.setstate += 1;
    let reply = sliding(con, who, APPROX, "1000000 86400000 COST 999001 APPROX");
    assert_eq!(reply[..3], [0, 1_000_000, 999_000], "{who}: {reply:?}");
    // One unit too many: in the next window the 1,000 weigh at most 999 after 86.4 s.
    assert_eq!(
        reply[3],
        reply[4] - one_day + 86_400,
        "{who}: APPROX retry_after {reply:?}"
    );

    // RL.ALL counts everywhere or nowhere.
    assert_eq!(
        all_remaining(con, who, "COST 2"),
        (1, vec![3, 6, 998]),
        "{who}"
    );
    written.setstate += ALL_KEYS.len();
    let (allowed, decisions) = all_of(con, who, "COST 4");
    let column = |i: usize| decisions.iter().map(|d| d[i]).collect::<Vec<_>>();
    assert_eq!(
        (allowed, column(0), column(2)),
        (0, vec![0, 1, 1], vec![3, 2, 994]),
        "{who}: only the minute limit refuses {decisions:?}"
    );
    assert_eq!(
        all_remaining(con, who, "COST 3 PEEK"),
        (1, vec![0, 3, 995]),
        "{who}"
    );
    assert_eq!(
        all_remaining(con, who, "COST 0"),
        (1, vec![3, 6, 998]),
        "{who}: denied and PEEK calls counted nothing anywhere"
    );
    written
}

/// Leases in phase one: binary ids, a short lease, a denied holder, a renewal, releases,
/// and a key deleted by the release of its last lease.
fn leases_phase_one(con: &mut Connection, who: &str) -> Written {
    let mut written = Written::default();
    let reply = acquire(con, who, LEASES, "3 60000", HOLDER);
    assert_eq!(reply[..4], [1, 3, 2, 0], "{who}: RL.ACQUIRE");
    // A lease ends `lease_ms` after now rounded up to the millisecond.
    assert!(
        (60_000..=60_001).contains(&reply[4]),
        "{who}: RL.ACQUIRE {reply:?}"
    );
    let reply = acquire(con, who, LEASES, "3 60000", SECOND);
    assert_eq!(reply[..4], [1, 3, 1, 0], "{who}: RL.ACQUIRE");
    // A lease ends `lease_ms` after now rounded up to the millisecond.
    assert!(
        (60_000..=60_001).contains(&reply[4]),
        "{who}: RL.ACQUIRE {reply:?}"
    );
    // Ended by phase two, 1.5 s later.
    let reply = acquire(con, who, LEASES, "3 1400", SHORT);
    assert_eq!(reply[..4], [1, 3, 0, 0], "{who}: RL.ACQUIRE {reply:?}");
    written.setstate += 3;
    let reply = acquire(con, who, LEASES, "3 60000", b"late");
    assert_eq!(reply[..3], [0, 3, 0], "{who}: a fourth holder {reply:?}");
    assert!(
        (1..=1_401).contains(&reply[3]),
        "{who}: the short lease ends first {reply:?}"
    );
    let reply = acquire(con, who, LEASES, "3 60000", HOLDER);
    assert_eq!(reply[..4], [1, 3, 0, 0], "{who}: a renewal");
    assert!(
        (60_000..=60_001).contains(&reply[4]),
        "{who}: a renewal {reply:?}"
    );
    written.setstate += 1;
    assert_eq!(release(con, who, LEASES, SECOND), 1, "{who}");
    written.setstate += 1;
    assert_eq!(release(con, who, LEASES, b"never held"), 0, "{who}");

    let reply = acquire(con, who, LEASE_GONE, "1 60000", ONLY);
    assert_eq!(reply[..4], [1, 1, 0, 0], "{who}: RL.ACQUIRE");
    // A lease ends `lease_ms` after now rounded up to the millisecond.
    assert!(
        (60_000..=60_001).contains(&reply[4]),
        "{who}: RL.ACQUIRE {reply:?}"
    );
    written.setstate += 1;
    assert_eq!(release(con, who, LEASE_GONE, ONLY), 1, "{who}");
    written.delete += 1;
    let exists: i64 = redis::cmd("EXISTS").arg(LEASE_GONE).query(con).unwrap();
    assert_eq!(exists, 0, "{who}: releasing the last lease deletes the key");
    written
}

/// The exact sliding log in phase one: 16 entries, six of them in one transaction,
/// the others 7 ms apart (the clock ends 70 ms after [`PHASE_ONE_OFFSET`]).
fn sliding_log_phase_one(con: &mut Connection, who: &str, clock: Clock) -> Written {
    // One millisecond where the server freezes time for a MULTI (Redis 7.2+, Valkey),
    // a few elsewhere (Redis 7.0).
    let mut pipe = redis::pipe();
    pipe.atomic();
    for _ in 0..5 {
        pipe.add_command(command("RL.SLIDING", LOG, "100 60000"));
    }
    pipe.add_command(command("RL.SLIDING", LOG, "100 60000 COST 3"));
    let replies: Vec<Vec<i64>> = pipe
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: MULTI RL.SLIDING: {e}"));
    let remaining: Vec<i64> = replies.iter().map(|reply| reply[2]).collect();
    assert_eq!(remaining, [99, 98, 97, 96, 95, 92], "{who}: {replies:?}");

    let mut used = 8;
    for step in 1..=10 {
        clock.set(con, PHASE_ONE_OFFSET + 7 * step);
        let cost = 1 + step % 3;
        used += cost;
        let reply = sliding(con, who, LOG, &format!("100 60000 COST {cost}"));
        let remaining = 100 - i64::try_from(used).unwrap();
        assert_eq!(reply, [1, 100, remaining, 0, 60_000], "{who}: step {step}");
    }
    assert_eq!(used, 28, "{who}");

    // One unit too many until the first request (cost 1) leaves, 70 ms after it.
    let reply = sliding(con, who, LOG, "100 60000 COST 73");
    assert_eq!(reply[..3], [0, 100, 72], "{who}: {reply:?}");
    assert!(
        (58_930..=59_930).contains(&reply[3]),
        "{who}: retry_after {reply:?}"
    );
    assert!((59_000..=60_000).contains(&reply[4]), "{who}: {reply:?}");
    let reply = sliding(con, who, LOG, "100 60000 COST 101");
    assert_eq!(reply[..4], [0, 100, 72, -1], "{who}: never {reply:?}");
    let reply = sliding(con, who, LOG, "100 60000 COST 72 PEEK");
    assert_eq!(reply[..4], [1, 100, 0, 0], "{who}: PEEK {reply:?}");
    let reply = sliding(con, who, LOG, "100 60000 COST 0");
    assert_eq!(reply[..4], [1, 100, 72, 0], "{who}: COST 0 {reply:?}");
    Written {
        setstate: 16,
        ..Written::default()
    }
}

/// Phase two, at clock offset [`STATUS_OFFSET`].
pub fn phase_two(con: &mut Connection, who: &str, clock: Clock) -> Written {
    clock.set(con, STATUS_OFFSET);
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

    // A tier change keeps the logged usage: 28 of 40.
    let reply = sliding(con, who, LOG, "40 60000 COST 2");
    assert_eq!(reply, [1, 40, 10, 0, 60_000], "{who}: RL.SLIDING");
    let reply = sliding(con, who, APPROX, "2000000 86400000 APPROX");
    assert_eq!(reply[..4], [1, 2_000_000, 1_998_999, 0], "{who}: {reply:?}");
    let reply = fixed(con, who, DAY, "5 86400000");
    assert_eq!(reply[..4], [1, 5, 1, 0], "{who}: RL.FIXED {reply:?}");
    written.setstate += 3;
    assert_eq!(all_remaining(con, who, ""), (1, vec![2, 5, 997]), "{who}");
    written.setstate += ALL_KEYS.len();

    // The short lease has expired: releasing a lease nobody holds drops it, a write.
    assert_eq!(release(con, who, LEASES, b"never held"), 0, "{who}");
    written.setstate += 1;
    let report = status(con, LEASES).unwrap();
    assert_eq!(report.number("remaining"), 1, "{who}: {report:?}");

    assert_stored_shapes(con, who);
    written
}

/// The log and the leases hold what the timeline promised: 17 entries, several in one
/// millisecond, costs up to 3; one lease with a binary id.
fn assert_stored_shapes(con: &mut Connection, who: &str) {
    let Limiter::Sliding(_, log) = stored(con, LOG) else {
        panic!("{who}: {} is not a sliding log", show(LOG));
    };
    let entries: Vec<(u64, u64)> = log.iter().collect();
    let most_in_one_ms = entries
        .iter()
        .map(|(at, _)| entries.iter().filter(|(other, _)| other == at).count())
        .max();
    let highest_cost = entries.iter().map(|(_, cost)| *cost).max();
    assert_eq!(
        (entries.len(), log.total(), highest_cost),
        (17, 30, Some(3)),
        "{who}: {entries:?}"
    );
    assert!(most_in_one_ms >= Some(2), "{who}: {entries:?}");

    let Limiter::Concurrency(_, leases) = stored(con, LEASES) else {
        panic!("{who}: {} is not a lease key", show(LEASES));
    };
    let ids: Vec<&[u8]> = leases.held().iter().map(|lease| &*lease.id).collect();
    assert_eq!(ids, [HOLDER], "{who}: {leases:?}");
}

/// The workload's limiter keys that exist, with their snapshots.
pub fn snapshots(con: &mut Connection, who: &str) -> Vec<(Vec<u8>, KeySnapshot)> {
    LIMITERS
        .iter()
        .filter_map(|(key, _, _)| snapshot(con, key).map(|s| (key.to_vec(), s)))
        .inspect(|(key, snap)| assert_expiry_follows_state(snap, &format!("{who}, {}", show(key))))
        .collect()
}

/// `RL.STATUS` of every limiter key that exists.
pub fn statuses(con: &mut Connection) -> Vec<(Vec<u8>, Status)> {
    LIMITERS
        .iter()
        .filter_map(|(key, _, _)| status(con, *key).map(|s| (key.to_vec(), s)))
        .collect()
}

/// Checks that the keyspace after a reload is exactly the one before it.
pub fn assert_same_keyspace(
    con: &mut Connection,
    who: &str,
    clock: Clock,
    before: &[(Vec<u8>, KeySnapshot)],
    statuses_before: &[(Vec<u8>, Status)],
    read_at: Instant,
) {
    assert_eq!(
        snapshots(con, who),
        before,
        "{who}: stored limiters changed"
    );
    for deleted in [GONE, LEASE_GONE] {
        assert_eq!(
            redis::cmd("EXISTS").arg(deleted).query::<i64>(con).unwrap(),
            0,
            "{who}: the deleted key {} is back",
            show(deleted)
        );
    }
    let plain: String = redis::cmd("GET").arg(PLAIN).query(con).unwrap();
    assert_eq!(plain, "hello", "{who}: the plain string");
    for (key, _) in before {
        let kind: String = redis::cmd("TYPE").arg(key).query(con).unwrap();
        assert_eq!(kind, "redlimit0", "{who}: TYPE {}", show(key));
    }

    clock.set(con, STATUS_OFFSET);
    let after = statuses(con);
    let elapsed = read_at.elapsed();
    assert_eq!(after.len(), statuses_before.len(), "{who}: {after:?}");
    for ((key, old), (_, new)) in statuses_before.iter().zip(&after) {
        if let Err(diff) = old.matches_later(new, elapsed) {
            panic!("{who}: RL.STATUS {} differs: {diff}", show(key));
        }
    }
}

pub fn info_number(con: &mut Connection, section: &str, field: &str) -> i64 {
    info_value(con, section, field)
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .parse()
        .unwrap_or_else(|e| panic!("INFO {section} {field}: {e}"))
}

/// The server's clock in Unix microseconds (`TIME`).
pub fn server_micros(con: &mut Connection) -> u64 {
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(con).unwrap();
    seconds * 1_000_000 + micros
}

/// Two limiters: the same policy and usage, apart from when it was measured.
fn same_usage(a: &Limiter, b: &Limiter) -> bool {
    match (a, b) {
        (Limiter::TokenBucket(p, s), Limiter::TokenBucket(q, t)) => {
            p == q && s.deficit == t.deficit
        }
        (Limiter::Throttle(p, _), Limiter::Throttle(q, _)) => p == q,
        (Limiter::Sliding(p, s), Limiter::Sliding(q, t)) => {
            let costs = |log: &redlimit_core::SlidingLog| -> Vec<u64> {
                log.iter().map(|(_, cost)| cost).collect()
            };
            p == q && costs(s) == costs(t)
        }
        (Limiter::SlidingApprox(p, s), Limiter::SlidingApprox(q, t)) => {
            p == q && (s.previous, s.current) == (t.previous, t.current)
        }
        (Limiter::Fixed(p, s), Limiter::Fixed(q, t)) => p == q && s.count == t.count,
        (Limiter::Concurrency(p, s), Limiter::Concurrency(q, t)) => {
            let ids = |leases: &redlimit_core::Leases| -> Vec<Box<[u8]>> {
                leases.held().iter().map(|lease| lease.id.clone()).collect()
            };
            p == q && ids(s) == ids(t)
        }
        _ => false,
    }
}

/// Calls `key` and a never-used key with the same policy in one transaction, and
/// checks both answer and store the same thing: `key` reads as a fresh key.
pub fn assert_reads_as_fresh(con: &mut Connection, who: &str, key: &[u8], name: &str, args: &str) {
    let fresh = [b"fresh:".as_slice(), key].concat();
    let (old_reply, fresh_reply): (Vec<i64>, Vec<i64>) = redis::pipe()
        .atomic()
        .add_command(command(name, key, args))
        .add_command(command(name, &fresh, args))
        .query(con)
        .unwrap_or_else(|e| panic!("{who}: {name} {}: {e}", show(key)));
    // The time left may differ by the millisecond the transaction can straddle where
    // the server does not freeze time for it (Redis 7.0).
    let same_time_left = old_reply[3..]
        .iter()
        .zip(&fresh_reply[3..])
        .all(|(old, fresh)| (old - fresh).abs() <= 1);
    assert!(
        old_reply[..3] == fresh_reply[..3] && same_time_left,
        "{who}: {name} {} {args} on an idle key {old_reply:?} and on a fresh key {fresh_reply:?}",
        show(key)
    );
    let old = stored(con, key);
    let new = stored(con, &fresh);
    assert!(
        same_usage(&old, &new),
        "{who}: {} stored {old:?}, a fresh key {new:?}",
        show(key)
    );
}
