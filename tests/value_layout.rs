//! A key's in-memory layout never shows outside the server: a limiter held in the
//! compact layout (token bucket, throttle, fixed window, APPROX: 16 bytes, an interned
//! policy id) and one held as its stored encoding (a state too wide for the compact
//! fields, an exact log) save, reload, replicate, dump and migrate as the same version-1
//! bytes, byte for byte, with equal digests everywhere.
//!
//! Every test runs against every server found by `available_servers()`; build the module
//! first (`cargo build -p redlimit-module`).

#[path = "live/calls.rs"]
mod calls;

use calls::{servers, show, with_module};
use redis::Connection;
use redlimit_core::{
    BucketState, FixedWindow, Limiter, Policy, Request, SlidingCounter, SlidingWindow, Throttle,
    Timestamp, TokenBucket,
};
use redlimit_test_support::{digest_value, stored_state};

/// The server's clock.
fn server_now(con: &mut Connection) -> Timestamp {
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(con).unwrap();
    Timestamp::from_micros(seconds * 1_000_000 + micros)
}

/// What a first call of `policy` at `now` stores.
fn first_state(policy: Policy, now: Timestamp) -> Limiter {
    policy
        .decide(None, now, Request::new(3))
        .unwrap()
        .update
        .unwrap()
}

/// Keys and the version-1 bytes each is set to: four compact ones, two that are not.
fn limiters(now: Timestamp) -> Vec<(&'static [u8], Vec<u8>)> {
    let bucket = TokenBucket::new(100, 1, 60_000).unwrap();
    // A measuring time past 2^56 µs (the year 4253): wider than the compact field.
    let wide = Limiter::TokenBucket(
        bucket,
        BucketState {
            deficit: 60_000_000,
            at: Timestamp::from_micros((1 << 56) + 5),
        },
    );
    vec![
        (
            b"compact:tokenbucket",
            first_state(Policy::TokenBucket(bucket), now).encode(),
        ),
        (
            b"compact:throttle",
            first_state(Policy::Throttle(Throttle::new(15, 30, 60).unwrap()), now).encode(),
        ),
        (
            b"compact:fixed",
            first_state(
                Policy::Fixed(FixedWindow::new(100, 3_600_000).unwrap()),
                now,
            )
            .encode(),
        ),
        (
            b"compact:approx",
            first_state(
                Policy::SlidingApprox(SlidingCounter::new(100, 60_000).unwrap()),
                now,
            )
            .encode(),
        ),
        (b"encoded:wide-bucket", wide.encode()),
        (
            b"encoded:log",
            first_state(
                Policy::Sliding(SlidingWindow::new(100, 60_000).unwrap()),
                now,
            )
            .encode(),
        ),
    ]
}

/// Every key holds exactly its bytes, with the digests `digests` (when given).
fn assert_holds(
    con: &mut Connection,
    who: &str,
    limiters: &[(&[u8], Vec<u8>)],
    digests: Option<&[String]>,
) -> Vec<String> {
    let mut seen = Vec::new();
    for (index, (key, bytes)) in limiters.iter().enumerate() {
        assert_eq!(
            stored_state(con, key).as_ref(),
            Some(bytes),
            "{who}: {} dumps its version-1 bytes",
            show(key)
        );
        let digest = digest_value(con, key);
        if let Some(digests) = digests {
            assert_eq!(digest, digests[index], "{who}: digest of {}", show(key));
        }
        seen.push(digest);
    }
    seen
}

#[test]
fn every_layout_saves_replicates_and_moves_as_the_same_bytes() {
    for binary in servers() {
        let who = binary.name();
        let primary = with_module(&binary).start();
        let replica = with_module(&binary).replica_of(&primary).start();
        replica.wait_for_sync();
        let target = with_module(&binary).start();
        let mut con = primary.connection();
        let now = server_now(&mut con);
        let limiters = limiters(now);
        for (key, bytes) in &limiters {
            let () = redis::cmd("RL.SETSTATE")
                .arg(key)
                .arg(bytes)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("{who}: RL.SETSTATE {}: {e}", show(key)));
        }
        let digests = assert_holds(&mut con, who, &limiters, None);

        // The module's own share (MEMORY USAGE): 16 bytes for a compact value, the
        // length and the encoding for the others.
        let usage = |con: &mut Connection, key: &[u8]| -> i64 {
            redis::cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .query(con)
                .unwrap()
        };
        assert!(
            usage(&mut con, b"compact:tokenbucket") < usage(&mut con, b"encoded:wide-bucket"),
            "{who}: a compact token bucket is smaller than an encoded one"
        );

        // Replication: the replica holds the same bytes and digests.
        let _: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(5_000)
            .query(&mut con)
            .unwrap();
        let mut copy = replica.connection();
        assert_holds(
            &mut copy,
            &format!("{who} replica"),
            &limiters,
            Some(&digests),
        );

        // RDB: saved and loaded again, the same bytes and digests.
        let () = redis::cmd("DEBUG").arg("RELOAD").query(&mut con).unwrap();
        assert_holds(
            &mut con,
            &format!("{who} reloaded"),
            &limiters,
            Some(&digests),
        );

        // DUMP/RESTORE and MIGRATE into another server: the same bytes there.
        let mut other = target.connection();
        for (key, _) in &limiters {
            let migrated: String = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target.port())
                .arg(key)
                .arg(0)
                .arg(5_000)
                .arg("COPY")
                .query(&mut con)
                .unwrap_or_else(|e| panic!("{who}: MIGRATE {}: {e}", show(key)));
            assert_eq!(migrated, "OK", "{who}");
        }
        assert_holds(
            &mut other,
            &format!("{who} migrated"),
            &limiters,
            Some(&digests),
        );

        // A decision on each compact key, then primary and replica still agree.
        for (key, args) in [
            (
                &b"compact:tokenbucket"[..],
                &["RL.TOKENBUCKET", "100", "1", "60000"][..],
            ),
            (b"compact:throttle", &["RL.THROTTLE", "15", "30", "60"]),
            (b"compact:fixed", &["RL.FIXED", "100", "3600000"]),
            (b"compact:approx", &["RL.SLIDING", "100", "60000", "APPROX"]),
        ] {
            let mut cmd = redis::cmd(args[0]);
            cmd.arg(key).arg(&args[1..]);
            let _: redis::Value = cmd.query(&mut con).unwrap();
            let _: i64 = redis::cmd("WAIT")
                .arg(1)
                .arg(5_000)
                .query(&mut con)
                .unwrap();
            let here = stored_state(&mut con, key).unwrap();
            assert_eq!(
                stored_state(&mut copy, key).as_ref(),
                Some(&here),
                "{who}: {} after a decision",
                show(key)
            );
            assert_eq!(
                digest_value(&mut copy, key),
                digest_value(&mut con, key),
                "{who}: {}",
                show(key)
            );
            assert_eq!(
                Limiter::decode(&here).unwrap().algorithm(),
                Limiter::decode(&limiters.iter().find(|(k, _)| *k == key).unwrap().1)
                    .unwrap()
                    .algorithm(),
                "{who}"
            );
        }
    }
}
