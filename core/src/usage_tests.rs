//! Usage counters against a naive model: a list of (time, amount) events.

use super::*;
use proptest::prelude::*;

fn at_ms(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// The naive reference: every event kept with the bucket it counted in.
struct Model {
    shape: UsageShape,
    /// (bucket start, amount) of every event, in order.
    events: Vec<(u64, u64)>,
    /// The newest bucket an event counted in (a clock that moves back counts there).
    newest: Option<u64>,
}

impl Model {
    fn current(&self, now_ms: u64) -> u64 {
        let bucket = now_ms - now_ms % self.shape.bucket_ms();
        self.newest.map_or(bucket, |newest| bucket.max(newest))
    }

    fn live(&self, now_ms: u64) -> bool {
        self.newest
            .is_some_and(|newest| now_ms < newest + self.shape.span_ms())
    }

    fn add(&mut self, now_ms: u64, amount: u64) {
        if !self.live(now_ms) {
            self.events.clear();
            self.newest = None;
        }
        let bucket = self.current(now_ms);
        self.events.push((bucket, amount));
        self.newest = Some(bucket);
    }

    fn read(&self, now_ms: u64) -> Vec<(u64, u64)> {
        if !self.live(now_ms) {
            return Vec::new();
        }
        let current = self.current(now_ms);
        let bucket_ms = self.shape.bucket_ms();
        let oldest = current.saturating_sub((self.shape.buckets() - 1) * bucket_ms);
        (0..)
            .map(|i| oldest + i * bucket_ms)
            .take_while(|&start| start <= current)
            .map(|start| {
                let sum: u128 = self
                    .events
                    .iter()
                    .filter(|(bucket, _)| *bucket == start)
                    .map(|(_, amount)| u128::from(*amount))
                    .sum();
                (
                    start,
                    u64::try_from(sum.min(u128::from(MAX_USAGE_AMOUNT))).unwrap(),
                )
            })
            .collect()
    }
}

fn read(shape: &UsageShape, stored: Option<&Limiter>, now: Timestamp) -> Vec<(u64, u64)> {
    match Limiter::live(stored, now) {
        Some(Limiter::Usage(_, counted)) => shape.read(counted, now),
        _ => Vec::new(),
    }
}

#[test]
fn shapes_are_bounded() {
    assert!(UsageShape::new(0, 24).is_err());
    assert!(UsageShape::new(1, 0).is_err());
    assert_eq!(
        UsageShape::new(1, 1_441).unwrap_err().to_string(),
        "buckets must be at most 1440"
    );
    assert!(UsageShape::new(MAX_DURATION_MS / 1_440, 1_440).is_ok());
    let too_long = UsageShape::new(MAX_DURATION_MS / 1_440 + 1, 1_440).unwrap_err();
    assert_eq!(too_long.argument(), "bucket_ms");
    assert_eq!(UsageShape::daily(7).unwrap().span_ms(), 7 * 86_400_000);
    assert_eq!(UsageShape::per_minute(60).unwrap().bucket_ms(), 60_000);
}

#[test]
fn buckets_roll_over_and_the_counter_expires() {
    let shape = UsageShape::new(1_000, 3).unwrap();
    let first = shape.record(None, at_ms(5_200), 4).unwrap();
    assert_eq!(first.total, 4);
    let stored = first.update.unwrap();
    assert_eq!(stored.idle_at(), at_ms(8_000));
    let second = shape.record(Some(&stored), at_ms(6_999), 6).unwrap();
    assert_eq!(second.total, 10);
    let stored = second.update.unwrap();
    assert_eq!(
        read(&shape, Some(&stored), at_ms(7_000)),
        [(5_000, 4), (6_000, 6), (7_000, 0)]
    );
    // 5 s leaves the ring at 8 s; 6 s at 9 s, when the key is gone.
    assert_eq!(
        shape.record(Some(&stored), at_ms(8_000), 0).unwrap().total,
        6
    );
    assert_eq!(stored.idle_at(), at_ms(9_000));
    assert_eq!(read(&shape, Some(&stored), at_ms(9_000)), []);
    let fresh = shape.record(Some(&stored), at_ms(9_000), 1).unwrap();
    assert_eq!(fresh.total, 1, "an idle counter starts again from nothing");
}

#[test]
fn a_clock_that_moves_back_counts_in_the_newest_bucket() {
    let shape = UsageShape::new(1_000, 4).unwrap();
    let stored = shape
        .record(None, at_ms(10_000), 1)
        .unwrap()
        .update
        .unwrap();
    let back = shape.record(Some(&stored), at_ms(7_500), 2).unwrap();
    let stored = back.update.unwrap();
    assert_eq!(
        read(&shape, Some(&stored), at_ms(7_500)),
        [(7_000, 0), (8_000, 0), (9_000, 0), (10_000, 3)]
    );
}

#[test]
fn a_shape_mismatch_or_a_limiter_is_refused_and_zero_writes_nothing() {
    let shape = UsageShape::hourly(24).unwrap();
    let now = at_ms(1_700_000_000_000);
    let stored = shape.record(None, now, 5).unwrap().update.unwrap();
    let other = UsageShape::per_minute(60).unwrap();
    let error = other.record(Some(&stored), now, 1).unwrap_err();
    assert_eq!(
        error.to_string(),
        "bucket_ms and buckets must be the key's: it records 24 buckets of 3600000 ms, not 60 \
         of 60000 ms (RL.RESET the key to change its shape)"
    );
    let zero = shape.record(Some(&stored), now, 0).unwrap();
    assert_eq!((zero.total, zero.update), (5, None));
    let bucket = crate::Policy::TokenBucket(crate::TokenBucket::new(3, 1, 1_000).unwrap());
    let limiter = bucket
        .decide(None, now, crate::Request::new(1))
        .unwrap()
        .update
        .unwrap();
    assert_eq!(
        shape
            .record(Some(&limiter), now, 1)
            .unwrap_err()
            .to_string(),
        "the key holds a tokenbucket limiter"
    );
    assert_eq!(
        bucket
            .decide(Some(&stored), now, crate::Request::new(1))
            .unwrap_err()
            .to_string(),
        "the key holds a usage limiter"
    );
}

#[test]
fn amounts_saturate_instead_of_wrapping() {
    let shape = UsageShape::new(1_000, 2).unwrap();
    let mut stored = None;
    for second in [0, 0, 1, 1, 1] {
        let recorded = shape
            .record(stored.as_ref(), at_ms(second * 1_000), MAX_USAGE_RECORD)
            .unwrap();
        stored = recorded.update;
    }
    let stored = stored.unwrap();
    assert_eq!(
        read(&shape, Some(&stored), at_ms(1_000)),
        [(0, MAX_USAGE_AMOUNT), (1_000, MAX_USAGE_AMOUNT)]
    );
    assert_eq!(
        shape.record(Some(&stored), at_ms(1_000), 0).unwrap().total,
        MAX_USAGE_AMOUNT
    );
    assert_eq!(Limiter::decode(&stored.encode()), Ok(stored));
}

#[test]
fn the_stored_counter_is_canonical() {
    let shape = UsageShape::new(10, 5).unwrap();
    let stored = shape.record(None, at_ms(100), 1).unwrap().update.unwrap();
    let stored = shape
        .record(Some(&stored), at_ms(130), 2)
        .unwrap()
        .update
        .unwrap();
    let Limiter::Usage(_, counted) = &stored else {
        unreachable!()
    };
    assert_eq!(
        (counted.newest_ms(), counted.amounts()),
        (130, &[1, 0, 0, 2][..])
    );
    // Moving on drops the leading buckets, and with them the zeros they uncover.
    let stored = shape
        .record(Some(&stored), at_ms(150), 3)
        .unwrap()
        .update
        .unwrap();
    let Limiter::Usage(_, counted) = &stored else {
        unreachable!()
    };
    assert_eq!(
        (counted.newest_ms(), counted.amounts()),
        (150, &[2, 0, 3][..])
    );
    for bad in [
        (150, vec![]),
        (150, vec![0, 3]),
        (150, vec![3, 0]),
        (155, vec![3]),
        (150, vec![1; 6]),
        (20, vec![1, 1, 1, 1]),
        (150, vec![MAX_USAGE_AMOUNT + 1]),
    ] {
        assert!(
            UsageBuckets::from_parts(&shape, bad.0, bad.1.clone()).is_err(),
            "{bad:?}"
        );
    }
}

proptest! {
    #[test]
    fn the_ring_reads_like_the_list_of_events(
        bucket_ms in 1u64..50,
        buckets in 1u64..8,
        steps in proptest::collection::vec(
            (0u64..120, prop_oneof![9 => 1u64..1_000, 1 => Just(MAX_USAGE_RECORD)], 0u8..10),
            1..80,
        ),
    ) {
        let shape = UsageShape::new(bucket_ms, buckets).unwrap();
        let mut model = Model { shape, events: Vec::new(), newest: None };
        let mut stored: Option<Limiter> = None;
        let mut now_ms = 1_000u64;
        for (advance, amount, action) in steps {
            // Mostly forward; sometimes back (a clock step), never below zero.
            if action == 0 {
                now_ms = now_ms.saturating_sub(advance);
            } else {
                now_ms += advance;
            }
            let now = Timestamp::from_micros(now_ms * 1_000 + u64::from(action) * 37);
            if action < 7 {
                let recorded = shape.record(stored.as_ref(), now, amount).unwrap();
                model.add(now_ms, amount);
                stored = recorded.update.or(stored);
                let expected_total = model.read(now_ms).iter().fold(0u64, |sum, (_, amount)| {
                    sum.saturating_add(*amount)
                });
                prop_assert_eq!(recorded.total, expected_total.min(MAX_USAGE_AMOUNT));
                let limiter = stored.as_ref().unwrap();
                prop_assert_eq!(Limiter::decode(&limiter.encode()), Ok(limiter.clone()));
            }
            let read = read(&shape, stored.as_ref(), now);
            prop_assert_eq!(&read, &model.read(now_ms));
            prop_assert!(read.is_empty() || read.len() as u64 == buckets);
            if let Some(limiter) = &stored {
                prop_assert_eq!(limiter.idle_at() > now, !read.is_empty());
            }
        }
    }

    #[test]
    fn counters_round_trip(
        bucket_ms in 1u64..100_000,
        buckets in 1u64..=MAX_USAGE_BUCKETS,
        newest in 0u64..1_000_000,
        amounts in proptest::collection::vec(1u64..=MAX_USAGE_AMOUNT, 1..20),
        zeros in 0usize..5,
    ) {
        let shape = UsageShape::new(bucket_ms, buckets).unwrap();
        let mut amounts = amounts;
        if amounts.len() >= 2 {
            for _ in 0..zeros {
                amounts.insert(1, 0);
            }
        }
        amounts.truncate(buckets as usize);
        while amounts.last() == Some(&0) {
            amounts.pop();
        }
        let newest_ms = (newest + amounts.len() as u64) * bucket_ms;
        let counted = UsageBuckets::from_parts(&shape, newest_ms, amounts).unwrap();
        let limiter = Limiter::Usage(shape, Box::new(counted));
        prop_assert_eq!(Limiter::decode(&limiter.encode()), Ok(limiter.clone()));
        prop_assert_eq!(limiter.encoded_len(), limiter.encode().len());
    }
}
