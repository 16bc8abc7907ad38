//! Criterion benchmarks of the pure algorithms: what one decision and one stored
//! encoding cost, without any server around them.
//!
//! ```text
//! cargo bench --bench core
//! ```
//!
//! For each algorithm (token bucket, throttle, fixed window, exact sliding window at
//! limit 100, `APPROX` counter): a fresh key (no stored limiter), an existing key that
//! allows the request, an existing key that denies it. For concurrency leases: a new
//! holder on a key with 9 leases, and a full key. For `decide_all`: two keys, as
//! `RL.ALL` runs it. Then `Limiter::encode`, `Limiter::encode_into` (what the module
//! writes per allowed call) and `Limiter::decode` (what the module reads per call, and
//! RDB load per key).

use criterion::{Criterion, criterion_main};
use redlimit_core::{
    Concurrency, FixedWindow, Limiter, Policy, Request, SlidingCounter, SlidingWindow, Throttle,
    Timestamp, TokenBucket, decide_all,
};
use std::hint::black_box;

/// A realistic server clock reading.
const NOW_MS: u64 = 1_763_927_000_000;

/// The throughput bench's token bucket: 100 tokens, 10 more every second.
fn token_bucket() -> Policy {
    Policy::TokenBucket(TokenBucket::new(100, 10, 1_000).expect("a valid policy"))
}

/// The throughput bench's throttle: bursts of 16, 30 per minute.
fn throttle() -> Policy {
    Policy::Throttle(Throttle::new(15, 30, 60).expect("a valid policy"))
}

/// The throughput bench's fixed window: 100 per minute.
fn fixed() -> Policy {
    Policy::Fixed(FixedWindow::new(100, 60_000).expect("a valid policy"))
}

/// The throughput bench's exact sliding window: 100 per minute.
fn sliding() -> Policy {
    Policy::Sliding(SlidingWindow::new(100, 60_000).expect("a valid policy"))
}

/// The throughput bench's `APPROX` window: 100 per minute.
fn sliding_approx() -> Policy {
    Policy::SlidingApprox(SlidingCounter::new(100, 60_000).expect("a valid policy"))
}

/// The limiter `policy` leaves after `calls` requests at `now`.
fn after_calls(policy: Policy, now: Timestamp, calls: usize) -> Limiter {
    let mut stored = None;
    for _ in 0..calls {
        let outcome = policy
            .decide(stored.as_ref(), now, Request::new(1))
            .expect("same algorithm");
        assert!(
            outcome.decision.allowed,
            "setup: {calls} calls must all pass"
        );
        stored = outcome.update;
    }
    stored.expect("at least one call")
}

fn bench_decide(c: &mut Criterion, name: &str, policy: Policy, capacity: usize) {
    let now = Timestamp::from_millis(NOW_MS);
    let later = now.plus_micros(1_000);
    let used = after_calls(policy, now, 1);
    let exhausted = after_calls(policy, now, capacity);
    assert!(
        policy
            .decide(Some(&used), later, Request::new(1))
            .is_ok_and(|o| o.decision.allowed)
    );
    assert!(
        policy
            .decide(Some(&exhausted), later, Request::new(1))
            .is_ok_and(|o| !o.decision.allowed)
    );

    let mut group = c.benchmark_group(format!("decide/{name}"));
    group.bench_function("fresh key", |b| {
        b.iter(|| black_box(policy).decide(None, black_box(now), Request::new(1)))
    });
    group.bench_function("existing key, allowed", |b| {
        b.iter(|| {
            black_box(policy).decide(Some(black_box(&used)), black_box(later), Request::new(1))
        })
    });
    group.bench_function("existing key, denied", |b| {
        b.iter(|| {
            black_box(policy).decide(
                Some(black_box(&exhausted)),
                black_box(later),
                Request::new(1),
            )
        })
    });
    group.finish();
}

fn decide(c: &mut Criterion) {
    bench_decide(c, "token bucket", token_bucket(), 100);
    bench_decide(c, "throttle", throttle(), 16);
    bench_decide(c, "fixed window", fixed(), 100);
    // The existing key holds 1 entry (allowed) or 100 (denied): a full log.
    bench_decide(c, "sliding log", sliding(), 100);
    bench_decide(c, "sliding approx", sliding_approx(), 100);
}

/// A lease key with `holders` leases, taken 1 ms apart.
fn leases(policy: Concurrency, holders: u64) -> redlimit_core::Leases {
    let mut now = Timestamp::from_millis(NOW_MS);
    let mut leases = redlimit_core::Leases::default();
    for holder in 0..holders {
        let outcome = policy.acquire(Some(&leases), now, &holder.to_be_bytes(), false);
        assert!(outcome.decision.allowed, "setup: {holders} leases must fit");
        leases = outcome
            .update
            .expect("an allowed acquire changes the leases");
        now = now.plus_micros(1_000);
    }
    leases
}

fn concurrency(c: &mut Criterion) {
    let policy = Concurrency::new(10, 60_000).expect("a valid policy");
    let now = Timestamp::from_millis(NOW_MS + 100);
    let (nine, ten) = (leases(policy, 9), leases(policy, 10));
    let mut group = c.benchmark_group("decide/concurrency");
    group.bench_function("acquire, 9 held", |b| {
        b.iter(|| black_box(policy).acquire(Some(black_box(&nine)), now, b"new-holder", false))
    });
    group.bench_function("acquire, full", |b| {
        b.iter(|| black_box(policy).acquire(Some(black_box(&ten)), now, b"new-holder", false))
    });
    group.finish();
}

fn all(c: &mut Criterion) {
    let now = Timestamp::from_millis(NOW_MS);
    let minute = Policy::Sliding(SlidingWindow::new(10, 60_000).expect("a valid policy"));
    let hour = Policy::Fixed(FixedWindow::new(100, 3_600_000).expect("a valid policy"));
    let limits = [(&b"{a}m"[..], minute), (&b"{a}h"[..], hour)];
    let stored = [after_calls(minute, now, 1), after_calls(hour, now, 1)];
    let mut group = c.benchmark_group("decide_all/2 keys");
    group.bench_function("fresh keys", |b| {
        b.iter(|| {
            decide_all(black_box(&limits), now, Request::new(1), |_, _| {
                Ok::<_, redlimit_core::WrongAlgorithm>(None)
            })
        })
    });
    group.bench_function("existing keys, allowed", |b| {
        b.iter(|| {
            decide_all(black_box(&limits), now, Request::new(1), |index, _| {
                Ok::<_, redlimit_core::WrongAlgorithm>(stored.get(index).cloned())
            })
        })
    });
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let now = Timestamp::from_millis(NOW_MS);
    let kinds = [
        ("token bucket", token_bucket(), 1),
        ("throttle", throttle(), 1),
        ("fixed window", fixed(), 1),
        ("sliding approx", sliding_approx(), 1),
        ("sliding log, 100 entries", sliding(), 100),
    ];
    for (name, policy, calls) in kinds {
        let mut limiter = after_calls(policy, now, 1);
        for call in 1..calls {
            let at = now.plus_micros(call * 600_000);
            let outcome = policy.decide(Some(&limiter), at, Request::new(1));
            limiter = outcome
                .expect("same algorithm")
                .update
                .expect("setup: every call is allowed");
        }
        let bytes = limiter.encode();
        assert_eq!(Limiter::decode(&bytes), Ok(limiter.clone()));
        let mut group = c.benchmark_group(format!("encoding/{name}"));
        group.bench_function("encode", |b| b.iter(|| black_box(&limiter).encode()));
        group.bench_function("encode_into (stack buffer)", |b| {
            let mut buffer = [0u8; 512];
            b.iter(|| black_box(&limiter).encode_into(&mut buffer))
        });
        group.bench_function("decode", |b| b.iter(|| Limiter::decode(black_box(&bytes))));
        group.finish();
    }
}

/// The group criterion runs (its macro makes an undocumented `pub fn`).
mod group {
    #![allow(missing_docs)]
    use super::{all, concurrency, decide, encoding};
    use criterion::criterion_group;

    criterion_group!(benches, decide, concurrency, all, encoding);
}

criterion_main!(group::benches);
