//! `RL.SETSTATE` checks its input like any command: it stores valid states of every
//! kind byte for byte, refuses anything else (malformed windows, logs and lease lists
//! included) and leaves the key as it was. A state idle since long ago reads as no key.

use redis::Connection;
use redlimit_core::{BucketState, Limiter, Timestamp, TokenBucket};
use redlimit_test_support::{set_clock_offset, status};

use super::workload::{
    assert_expiry_follows_state, assert_reads_as_fresh, server_micros, servers, show, snapshot,
    tokenbucket, with_module,
};

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

/// Algorithm tags of the stored encoding.
const TAG_FIXED: u8 = 3;
const TAG_SLIDING: u8 = 4;
const TAG_APPROX: u8 = 5;
const TAG_LEASES: u8 = 6;

/// A state written by hand: encoding version 1, the algorithm's tag, `numbers` as
/// varints, then `tail`.
fn encoded(tag: u8, numbers: &[u64], tail: &[u8]) -> Vec<u8> {
    let mut bytes = vec![1, tag];
    for &n in numbers {
        bytes.extend(varint(n));
    }
    bytes.extend_from_slice(tail);
    bytes
}

/// One lease as encoded: expiry (Unix ms), id length, id.
fn lease(expires_ms: u64, id: &[u8]) -> Vec<u8> {
    [varint(expires_ms), varint(id.len() as u64), id.to_vec()].concat()
}

/// A valid state of one of the newer kinds, and malformed variants of it.
pub struct Kind {
    /// What `RL.STATUS` calls the algorithm.
    pub algorithm: &'static str,
    pub valid: Vec<u8>,
    /// `remaining` of `RL.STATUS` on `valid`, where it does not depend on the moment.
    remaining: Option<i64>,
    pub malformed: Vec<(&'static str, Vec<u8>)>,
}

/// Sliding log, APPROX counter, fixed window and leases, valid at `now_ms` (for at least
/// 50 s), each with malformed variants that `RL.SETSTATE` and `RESTORE` must refuse.
/// Every state is shorter than 64 bytes.
pub fn newer_kinds(now_ms: u64) -> Vec<Kind> {
    // A fixed window of about 31.7 years: the current one ends in 2033.
    const LONG_WINDOW: u64 = 1_000_000_000_000;
    let window_end = now_ms - now_ms % LONG_WINDOW + LONG_WINDOW;
    let minute_start = now_ms - now_ms % 60_000;
    let log = |numbers: &[u64], entries: &[u8]| encoded(TAG_SLIDING, numbers, entries);
    let approx = |numbers: &[u64]| encoded(TAG_APPROX, numbers, &[]);
    let fixed = |numbers: &[u64]| encoded(TAG_FIXED, numbers, &[]);
    let first = lease(now_ms + 60_000, b"a\x00b");
    let second = lease(now_ms + 30_000, b"\xff");
    let both = [first.clone(), second].concat();
    let leases = |numbers: &[u64], tail: &[u8]| encoded(TAG_LEASES, numbers, tail);
    // An id announced as 3 bytes, of which 1 is there.
    let truncated = [varint(now_ms + 30_000), varint(3), b"\xff".to_vec()].concat();
    vec![
        Kind {
            algorithm: "sliding",
            // (ms since the previous entry, cost): costs 2, 1 and 3, the last two in one ms.
            valid: log(&[10, 60_000, now_ms], &[0, 2, 5, 1, 0, 3]),
            remaining: Some(3),
            malformed: vec![
                (
                    "a first delta that is not 0",
                    log(&[10, 60_000, now_ms], &[4, 2, 5, 1]),
                ),
                ("a zero cost", log(&[10, 60_000, now_ms], &[0, 2, 5, 0])),
                ("a zero first cost", log(&[10, 60_000, now_ms], &[0, 0])),
                (
                    "an entry without its cost",
                    log(&[10, 60_000, now_ms], &[0, 2, 5]),
                ),
                ("no first entry time", log(&[10, 60_000], &[])),
                ("limit 0", log(&[0, 60_000, now_ms], &[0, 1])),
                (
                    "limit above 2^16",
                    log(&[(1 << 16) + 1, 60_000, now_ms], &[0, 1]),
                ),
                ("window_ms 0", log(&[10, 0, now_ms], &[0, 1])),
            ],
        },
        Kind {
            algorithm: "sliding-approx",
            valid: approx(&[1_000, 60_000, minute_start, 10, 20]),
            remaining: None,
            malformed: vec![
                ("limit 0", approx(&[0, 60_000, minute_start, 10, 20])),
                ("window_ms 0", approx(&[1_000, 0, minute_start, 10, 20])),
                (
                    "limit above 2^40",
                    approx(&[(1 << 40) + 1, 60_000, minute_start, 10, 20]),
                ),
                (
                    "no current count",
                    approx(&[1_000, 60_000, minute_start, 10]),
                ),
                (
                    "a trailing byte",
                    approx(&[1_000, 60_000, minute_start, 10, 20, 0]),
                ),
            ],
        },
        Kind {
            algorithm: "fixed",
            valid: fixed(&[5, LONG_WINDOW, window_end, 2]),
            remaining: Some(2),
            malformed: vec![
                ("limit 0", fixed(&[0, LONG_WINDOW, window_end, 2])),
                ("window_ms 0", fixed(&[5, 0, window_end, 2])),
                ("no count", fixed(&[5, LONG_WINDOW, window_end])),
                (
                    "a trailing byte",
                    fixed(&[5, LONG_WINDOW, window_end, 2, 0]),
                ),
            ],
        },
        Kind {
            algorithm: "concurrency",
            valid: leases(&[3, 60_000, 2], &both),
            remaining: Some(0),
            malformed: vec![
                (
                    "a duplicate id",
                    leases(&[3, 60_000, 2], &[first.clone(), first.clone()].concat()),
                ),
                (
                    "a truncated id",
                    leases(&[3, 60_000, 2], &[first, truncated].concat()),
                ),
                ("fewer leases than counted", leases(&[3, 60_000, 3], &both)),
                ("more leases than counted", leases(&[3, 60_000, 1], &both)),
                ("limit 0", leases(&[0, 60_000, 2], &both)),
                ("limit above 1000", leases(&[1_001, 60_000, 2], &both)),
                ("lease_ms 0", leases(&[3, 0, 2], &both)),
                ("no lease count", leases(&[3, 60_000], &[])),
            ],
        },
    ]
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
            // Most random strings fail on the version byte; reach every algorithm's
            // numbers too.
            if i % 2 == 0 && bytes.len() >= 2 {
                bytes[0] = 1;
                bytes[1] = 1 + u8::try_from(i / 2 % 6).unwrap();
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
fn setstate_refuses_malformed_logs_leases_and_windows_and_keeps_the_key() {
    for binary in servers() {
        let server = with_module(&binary).start();
        let mut con = server.connection();
        let now_ms = server_micros(&mut con) / 1_000;
        for kind in newer_kinds(now_ms) {
            let who = &format!("{}, {}", binary.name(), kind.algorithm);
            let key = format!("k:{}", kind.algorithm).into_bytes();
            assert!(
                Limiter::decode(&kind.valid).is_ok(),
                "{who}: {:?}",
                kind.valid
            );
            setstate(&mut con, &key, &kind.valid).unwrap_or_else(|e| panic!("{who}: {e}"));
            let kept = snapshot(&mut con, &key).unwrap();
            assert_eq!(kept.state, kind.valid, "{who}: stored as sent");
            assert_expiry_follows_state(&kept, who);
            let report = status(&mut con, &key).unwrap();
            assert_eq!(report.algorithm, kind.algorithm, "{who}: {report:?}");
            if let Some(remaining) = kind.remaining {
                assert_eq!(report.number("remaining"), remaining, "{who}: {report:?}");
            }

            for (what, bad) in &kind.malformed {
                assert!(
                    Limiter::decode(bad).is_err(),
                    "{who}: {what}: {bad:?} decodes"
                );
                for target in [key.as_slice(), b"absent"] {
                    let error = setstate(&mut con, target, bad)
                        .expect_err(&format!("{who}: RL.SETSTATE with {what} {bad:?}"));
                    assert_eq!(error.code(), Some("ERR"), "{who}: {what}: {error}");
                    assert!(
                        error.to_string().contains("state must be a redlimit state"),
                        "{who}: {what}: {error}"
                    );
                }
                assert_eq!(
                    snapshot(&mut con, &key).as_ref(),
                    Some(&kept),
                    "{who}: RL.SETSTATE with {what} changed the key"
                );
                assert_eq!(
                    snapshot(&mut con, b"absent"),
                    None,
                    "{who}: RL.SETSTATE with {what} created a key"
                );
            }
        }
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
        let ancient_kinds = [
            encoded(TAG_SLIDING, &[10, 60_000, 1_000], &[0, 2, 7, 1]),
            encoded(TAG_APPROX, &[10, 60_000, 60_000, 3, 4], &[]),
            encoded(TAG_FIXED, &[10, 60_000, 60_000, 3], &[]),
            encoded(TAG_LEASES, &[3, 60_000, 1], &lease(61_000, b"\x00")),
        ];
        for (i, state) in ancient_kinds.iter().enumerate() {
            let key = format!("ancient:{i}");
            setstate(&mut con, key.as_bytes(), state)
                .unwrap_or_else(|e| panic!("{who}: {state:?}: {e}"));
            let exists: i64 = redis::cmd("EXISTS").arg(&key).query(&mut con).unwrap();
            assert_eq!(exists, 0, "{who}: {key} holds {state:?}, idle since 1970");
        }
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
        let now_ms = now / 1_000;
        let idle = [
            (
                b"idle".as_slice(),
                bucket(1, now - 10_000_000).encode(),
                "RL.TOKENBUCKET",
                "10 1 60000",
            ),
            (
                b"idle:log",
                encoded(
                    TAG_SLIDING,
                    &[10, 60_000, now_ms - 12_000],
                    &[&[0, 1][..], &varint(2_000), &[2]].concat(),
                ),
                "RL.SLIDING",
                "10 60000",
            ),
            (
                b"idle:leases",
                encoded(
                    TAG_LEASES,
                    &[3, 60_000, 1],
                    &lease(now_ms + 50_000, b"\xff\x00"),
                ),
                "RL.ACQUIRE",
                "3 60000 holder",
            ),
        ];
        for (key, state, _, _) in &idle {
            setstate(&mut con, key, state).unwrap();
            let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut con).unwrap();
            assert!(
                (45_000..=50_001).contains(&pttl),
                "{who}: {} idles 50 s from now: PTTL {pttl}",
                show(key)
            );
        }
        set_clock_offset(&mut con, 120_000);
        // A key past its idle moment is an absent key: RL.STATUS answers nil for it.
        for key in [b"idle".as_slice(), b"idle:log", b"idle:leases"] {
            assert!(
                status(&mut con, key).is_none(),
                "{who}: RL.STATUS of the idle key {}",
                show(key)
            );
        }
        for (key, _, name, args) in idle {
            assert_reads_as_fresh(&mut con, who, key, name, args);
        }
    }
}
