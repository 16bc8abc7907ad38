// Tests unwrap what they built valid, and index fixed arrays.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use proptest::prelude::*;
use redlimit_core::{
    FixedWindow, SlidingCounter, SlidingWindow, Throttle, TokenBucket, WindowCount,
};

/// Every limiter with a compact layout, from arbitrary (valid) policies and states.
fn limiters() -> impl Strategy<Value = Limiter> {
    let any_number = || {
        prop_oneof![
            Just(0u64),
            Just(1),
            Just(u64::MAX),
            any::<u64>(),
            0u64..1 << 48
        ]
    };
    prop_oneof![
        (
            1u64..1_000,
            1u64..1_000,
            1u64..100_000,
            any_number(),
            any_number()
        )
            .prop_map(|(capacity, refill, ms, deficit, at)| Limiter::TokenBucket(
                TokenBucket::new(capacity, refill, ms).unwrap(),
                BucketState {
                    deficit,
                    at: Timestamp::from_micros(at)
                },
            )),
        (0u64..1_000, 1u64..1_000, 1u64..100_000, any_number()).prop_map(
            |(burst, count, period, tat_ns)| Limiter::Throttle(
                Throttle::new(burst, count, period).unwrap(),
                ThrottleState { tat_ns },
            )
        ),
        (1u64..1_000_000, 1u64..100_000, any_number(), any_number()).prop_map(
            |(limit, ms, end_ms, count)| Limiter::Fixed(
                FixedWindow::new(limit, ms).unwrap(),
                WindowCount { end_ms, count },
            )
        ),
        (
            1u64..1_000_000,
            1u64..100_000,
            any_number(),
            any_number(),
            any_number()
        )
            .prop_map(
                |(limit, ms, start_ms, previous, current)| Limiter::SlidingApprox(
                    SlidingCounter::new(limit, ms).unwrap(),
                    WindowPair {
                        start_ms,
                        previous,
                        current
                    },
                )
            ),
    ]
}

proptest! {
    /// A compact value reads back as exactly the limiter it was made from, and so its
    /// stored encoding (what RDB, DUMP, AOF, replication and digests see) is the one
    /// the limiter had: the layout never changes a byte outside the process.
    #[test]
    fn compact_values_read_back_exactly(limiter in limiters()) {
        if let Some(bytes) = encode(&limiter, None) {
            prop_assert_eq!(bytes[0], MARK);
            let back = decode(&bytes);
            prop_assert_eq!(back.as_ref(), Some(&limiter));
            prop_assert_eq!(back.map(|l| l.encode()), Some(limiter.encode()));
            prop_assert_eq!(encode(&limiter, Some(id(&bytes))), Some(bytes), "the hint is taken");
        }
    }

    /// Numbers too wide for their field keep the stored encoding: never truncated.
    #[test]
    fn wide_numbers_have_no_compact_layout(deficit in 1u64 << 48.., at in 1u64 << 56..) {
        let policy = TokenBucket::new(10, 1, 1_000).unwrap();
        let wide = |deficit, at| Limiter::TokenBucket(policy, BucketState { deficit, at: Timestamp::from_micros(at) });
        prop_assert_eq!(encode(&wide(deficit, 0), None), None);
        prop_assert_eq!(encode(&wide(0, at), None), None);
        prop_assert!(encode(&wide(0, 0), None).is_some());
    }
}

#[test]
fn commands_states_are_compact() {
    // What the bench and `scripts/bytes.sh` store: 16 bytes, not 20 to 24.
    let now = Timestamp::from_millis(1_764_900_000_000);
    for policy in [
        Policy::TokenBucket(TokenBucket::new(100, 1, 60_000).unwrap()),
        Policy::Throttle(Throttle::new(15, 30, 60).unwrap()),
        Policy::Fixed(FixedWindow::new(100, 60_000).unwrap()),
        Policy::SlidingApprox(SlidingCounter::new(100, 60_000).unwrap()),
    ] {
        let mut limiter = None;
        for _ in 0..100 {
            let outcome = policy
                .decide(limiter.as_ref(), now, redlimit_core::Request::new(1))
                .unwrap();
            if let Some(update) = outcome.update {
                limiter = Some(update);
            }
        }
        let limiter = limiter.unwrap();
        let bytes = encode(&limiter, None).unwrap();
        assert_eq!(decode(&bytes), Some(limiter), "{policy:?}");
    }
}

#[test]
fn other_limiters_and_unknown_ids_have_none() {
    let log = Policy::Sliding(SlidingWindow::new(10, 1_000).unwrap())
        .decide(
            None,
            Timestamp::from_millis(5),
            redlimit_core::Request::new(1),
        )
        .unwrap()
        .update
        .unwrap();
    assert_eq!(encode(&log, None), None);
    let mut unknown = [MARK; LEN];
    unknown[1] = 0xff;
    unknown[2] = 0xff;
    assert_eq!(decode(&unknown), None);
}
