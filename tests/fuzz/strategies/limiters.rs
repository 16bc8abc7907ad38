//! Strategies for limiters and stored states: policies of every algorithm, raw and lived
//! states, mutations and states written by hand at the bounds, clock offsets, and the
//! steps of a plain batch.

use std::time::{SystemTime, UNIX_EPOCH};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use redlimit_core::{
    BucketState, Concurrency, FixedWindow, Limiter, Policy, Request, SlidingCounter, SlidingWindow,
    Throttle, ThrottleState, Timestamp, TokenBucket,
};

use crate::commands::{Call, bytes, decimal};
use crate::settings::{
    MAX_APPROX, MAX_BUCKET_PRODUCT, MAX_COUNT, MAX_DURATION_MS, MAX_LEASES, MAX_OFFSET_MS,
    MAX_SLIDING_LIMIT,
};
use crate::strategies::calls::{BOUNDARIES, LEASE_IDS, call, junk};

/// Microseconds since the Unix epoch on this machine (the servers run here too).
pub fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn bucket_policy() -> BoxedStrategy<TokenBucket> {
    let wide = |small: u64| prop_oneof![4 => 1..=small, 1 => any::<u64>()];
    (wide(1_000), wide(1_000), wide(100_000))
        .prop_map(|(capacity, refill, period)| {
            TokenBucket::new(capacity, refill, period).unwrap_or_else(|_| {
                TokenBucket::new(
                    capacity % 1_000 + 1,
                    refill % 1_000 + 1,
                    period % 100_000 + 1,
                )
                .expect("a small bucket is valid")
            })
        })
        .boxed()
}

fn throttle_policy() -> BoxedStrategy<Throttle> {
    let wide = |small: u64| prop_oneof![4 => 0..=small, 1 => any::<u64>()];
    (wide(100), wide(1_000), wide(100_000))
        .prop_map(|(burst, count, period)| {
            Throttle::new(burst, count, period).unwrap_or_else(|_| {
                Throttle::new(burst % 100, count % 1_000 + 1, period % 100_000 + 1)
                    .expect("a small throttle is valid")
            })
        })
        .boxed()
}

/// Token buckets and throttles with raw states anywhere: now-ish, the epoch, any u64.
fn raw_limiter() -> BoxedStrategy<Limiter> {
    let now = wall_micros();
    let micros = prop_oneof![
        1 => Just(0u64),
        3 => now - 10_000_000_000..now + 10_000_000_000,
        1 => any::<u64>(),
    ];
    let nanos = prop_oneof![
        1 => Just(0u64),
        3 => now * 1_000 - 10_000_000_000_000..now * 1_000 + 10_000_000_000_000,
        1 => any::<u64>(),
    ];
    let deficit = prop_oneof![
        1 => Just(0u64),
        3 => 0u64..1_000_000_000,
        1 => 0u64..1 << 62,
        1 => any::<u64>(),
    ];
    prop_oneof![
        (bucket_policy(), deficit, micros).prop_map(|(policy, deficit, at)| {
            let at = Timestamp::from_micros(at);
            Limiter::TokenBucket(policy, BucketState { deficit, at })
        }),
        (throttle_policy(), nanos)
            .prop_map(|(policy, tat_ns)| Limiter::Throttle(policy, ThrottleState { tat_ns })),
    ]
    .boxed()
}

/// A policy of any algorithm, leases included.
#[derive(Clone, Copy, Debug)]
enum AnyPolicy {
    Limit(Policy),
    Leases(Concurrency),
}

fn any_policy() -> BoxedStrategy<AnyPolicy> {
    let window = || (1u64..=10, 1u64..=100_000);
    prop_oneof![
        (1u64..=10, 1u64..=5, 1u64..=10_000).prop_map(|(c, r, ms)| AnyPolicy::Limit(
            Policy::TokenBucket(TokenBucket::new(c, r, ms).expect("valid"))
        )),
        (0u64..=10, 1u64..=10, 1u64..=100).prop_map(|(b, c, p)| AnyPolicy::Limit(
            Policy::Throttle(Throttle::new(b, c, p).expect("valid"))
        )),
        window().prop_map(|(l, ms)| AnyPolicy::Limit(Policy::Fixed(
            FixedWindow::new(l, ms).expect("valid")
        ))),
        window().prop_map(|(l, ms)| AnyPolicy::Limit(Policy::Sliding(
            SlidingWindow::new(l, ms).expect("valid")
        ))),
        window().prop_map(|(l, ms)| AnyPolicy::Limit(Policy::SlidingApprox(
            SlidingCounter::new(l, ms).expect("valid")
        ))),
        window().prop_map(|(l, ms)| AnyPolicy::Leases(Concurrency::new(l, ms).expect("valid"))),
    ]
    .boxed()
}

/// Limiters of every algorithm, as the core leaves them after a few random calls.
fn lived_limiter() -> BoxedStrategy<Limiter> {
    let now = wall_micros();
    (
        any_policy(),
        now - 100_000_000..now + 100_000_000,
        vec(
            (0u64..5_000_000, 0u64..4, select(LEASE_IDS.to_vec())),
            1..10,
        ),
    )
        .prop_filter_map("no call stored anything", |(policy, start, calls)| {
            let mut stored: Option<Limiter> = None;
            let mut now = start;
            for (elapsed, cost, id) in calls {
                now += elapsed;
                let at = Timestamp::from_micros(now);
                match policy {
                    AnyPolicy::Limit(policy) => {
                        let outcome = policy.decide(stored.as_ref(), at, Request::new(cost));
                        if let Ok(update) = outcome.map(|o| o.update) {
                            stored = update.or(stored);
                        }
                    }
                    AnyPolicy::Leases(policy) => {
                        let held = match &stored {
                            Some(Limiter::Concurrency(_, leases)) => Some(&**leases),
                            _ => None,
                        };
                        let outcome = policy.acquire(held, at, id.as_bytes(), false);
                        if let Some(leases) = outcome.update {
                            stored = Some(Limiter::Concurrency(policy, Box::new(leases)));
                        }
                    }
                }
            }
            stored
        })
        .boxed()
}

pub fn limiter() -> BoxedStrategy<Limiter> {
    prop_oneof![raw_limiter(), lived_limiter()].boxed()
}

/// One change to an encoded state.
#[derive(Clone, Copy, Debug)]
pub enum Mutation {
    Keep,
    FlipBit(usize, u8),
    Truncate(usize),
    Append(u8),
    Insert(usize, u8),
    Replace(usize, u8),
    Remove(usize),
}

impl Mutation {
    pub fn apply(self, mut state: Vec<u8>) -> Vec<u8> {
        let len = state.len().max(1);
        match self {
            Mutation::Keep => {}
            Mutation::FlipBit(at, bit) => {
                if let Some(byte) = state.get_mut(at % len) {
                    *byte ^= 1 << (bit % 8);
                }
            }
            Mutation::Truncate(at) => state.truncate(at % len),
            Mutation::Append(byte) => state.push(byte),
            Mutation::Insert(at, byte) => state.insert(at % (state.len() + 1), byte),
            Mutation::Replace(at, byte) => {
                if let Some(slot) = state.get_mut(at % len) {
                    *slot = byte;
                }
            }
            Mutation::Remove(at) => {
                if !state.is_empty() {
                    state.remove(at % len);
                }
            }
        }
        state
    }
}

pub fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        3 => Just(Mutation::Keep),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => any::<u8>().prop_map(Mutation::Append),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
    ]
    .boxed()
}

/// `numbers` as unsigned LEB128 varints, as the stored encoding writes them.
pub fn varints(numbers: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &n in numbers {
        let mut n = n;
        while n >= 0x80 {
            out.push(n.to_le_bytes()[0] | 0x80);
            n >>= 7;
        }
        out.push(n.to_le_bytes()[0]);
    }
    out
}

/// A stored state written by hand: the version byte, the algorithm's tag, then `numbers`
/// as varints (`core/src/encoding.rs`).
pub fn hand_state(tag: u8, numbers: &[u64]) -> Vec<u8> {
    [vec![1, tag], varints(numbers)].concat()
}

/// A state written by hand whose numbers (policy and state) sit at and beyond every
/// documented bound: accepted exactly when the policy is within the ranges.
pub fn bounded_state() -> BoxedStrategy<Vec<u8>> {
    let now_ms = wall_micros() / 1_000;
    let numbers = vec![
        0,
        1,
        2,
        1_000,
        MAX_LEASES,
        MAX_LEASES + 1,
        MAX_SLIDING_LIMIT,
        MAX_SLIDING_LIMIT + 1,
        MAX_APPROX,
        MAX_APPROX + 1,
        461,
        462,
        MAX_BUCKET_PRODUCT,
        MAX_BUCKET_PRODUCT + 1,
        MAX_DURATION_MS,
        MAX_DURATION_MS + 1,
        MAX_COUNT,
        MAX_COUNT + 1,
        i64::MAX.unsigned_abs(),
        u64::MAX,
        now_ms,
        now_ms * 1_000,
    ];
    (1u8..=6, vec(select(numbers), 5))
        .prop_map(|(tag, mut numbers)| {
            // Bucket and APPROX have five numbers, throttle and fixed four, the sliding
            // log and leases three (then no entries, no leases).
            let count = match tag {
                1 | 5 => 5,
                2 | 3 => 4,
                _ => 3,
            };
            numbers.truncate(count);
            if tag == 6 {
                numbers[2] = 0;
            }
            hand_state(tag, &numbers)
        })
        .boxed()
}

/// A state argument: a valid encoding (maybe mutated), one at the bounds, a valid header
/// then noise, or junk.
pub fn state_bytes() -> BoxedStrategy<Vec<u8>> {
    let headers: Vec<Vec<u8>> = (0u8..=7)
        .map(|tag| vec![1, tag])
        .chain([vec![1], vec![0, 1], vec![2, 1]])
        .collect();
    prop_oneof![
        4 => (limiter(), mutation()).prop_map(|(limiter, m)| m.apply(limiter.encode())),
        2 => bounded_state(),
        1 => (select(headers), vec(any::<u8>(), 0..24)).prop_map(|(h, rest)| [h, rest].concat()),
        1 => junk(),
    ]
    .boxed()
}

/// A `redlimit.clock-offset-ms` value: valid (up and down), out of range, not a number.
fn offset_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => (0..=MAX_OFFSET_MS).prop_map(decimal),
        3 => (0i64..=100_000_000).prop_map(decimal),
        1 => select(vec![0, MAX_OFFSET_MS, MAX_OFFSET_MS + 1, -1, i64::MIN, i64::MAX])
            .prop_map(decimal),
        1 => select(BOUNDARIES).prop_map(bytes),
        1 => any::<i64>().prop_map(decimal),
        1 => junk(),
    ]
    .boxed()
}

/// One step of a plain batch.
#[derive(Clone, Debug)]
pub enum Step {
    Call { call: Call, resp3: bool },
    ClockOffset(Vec<u8>),
    GetKeys(Call),
}

pub fn steps() -> BoxedStrategy<Vec<Step>> {
    vec(
        prop_oneof![
            20 => (call(), any::<bool>()).prop_map(|(call, resp3)| Step::Call { call, resp3 }),
            1 => offset_value().prop_map(Step::ClockOffset),
            1 => call().prop_map(Step::GetKeys),
        ],
        1..=24,
    )
    .boxed()
}
