//! Criterion benchmarks of the pure algorithms: what one decision and one stored
//! encoding cost, without any server around them.
//!
//! ```text
//! cargo bench --bench core
//! ```
//!
//! For each algorithm: a fresh key (no stored limiter), an existing key that allows the
//! request, an existing key that denies it; then `Limiter::encode` and `Limiter::decode`
//! (what RDB save/load, replication and AOF rewrite run per key).

use criterion::{Criterion, criterion_main};
use redlimit_core::{Limiter, Policy, Request, Throttle, Timestamp, TokenBucket};
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
}

fn encoding(c: &mut Criterion) {
    let now = Timestamp::from_millis(NOW_MS);
    for (name, policy) in [("token bucket", token_bucket()), ("throttle", throttle())] {
        let limiter = after_calls(policy, now, 1);
        let bytes = limiter.encode();
        assert_eq!(Limiter::decode(&bytes), Ok(limiter.clone()));
        let mut group = c.benchmark_group(format!("encoding/{name}"));
        group.bench_function("encode", |b| b.iter(|| black_box(&limiter).encode()));
        group.bench_function("decode", |b| b.iter(|| Limiter::decode(black_box(&bytes))));
        group.finish();
    }
}

/// The group criterion runs (its macro makes an undocumented `pub fn`).
mod group {
    #![allow(missing_docs)]
    use super::{decide, encoding};
    use criterion::criterion_group;

    criterion_group!(benches, decide, encoding);
}

criterion_main!(group::benches);
