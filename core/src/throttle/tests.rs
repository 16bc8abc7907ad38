use super::*;
use proptest::prelude::*;

const T0_NS: u64 = 1_700_000_000_000_000_000;

fn at_ms(ms: u64) -> Timestamp {
    Timestamp::from_micros(T0_NS / 1_000 + ms * 1_000)
}

/// The reply redis-cell gives: `[limited, limit, remaining, retry_after_s, reset_after_s]`.
fn reply(d: &Decision) -> [i64; 5] {
    let retry = match (d.allowed, d.retry_after) {
        (false, RetryAfter::After(wait)) => redis_cell_seconds(wait) as i64,
        _ => -1,
    };
    [
        i64::from(!d.allowed),
        d.limit as i64,
        d.remaining as i64,
        retry,
        redis_cell_seconds(d.reset_after) as i64,
    ]
}

struct Cell {
    policy: Throttle,
    state: Option<ThrottleState>,
}

impl Cell {
    fn throttle(&mut self, now: Timestamp, quantity: u64) -> [i64; 5] {
        let outcome = self.policy.decide(
            self.state.as_ref().map(|s| (&self.policy, s)),
            now,
            Request::new(quantity),
        );
        if outcome.update.is_some() {
            self.state = outcome.update;
        }
        reply(&outcome.decision)
    }
}

#[test]
fn the_redis_cell_readme_example() {
    // CL.THROTTLE user123 15 30 60: 16 requests at once, then one every 2 s.
    let mut cell = Cell {
        policy: Throttle::new(15, 30, 60).unwrap(),
        state: None,
    };
    assert_eq!(cell.throttle(at_ms(0), 1), [0, 16, 15, -1, 2]);
    for remaining in (0..15).rev() {
        assert_eq!(cell.throttle(at_ms(0), 1)[2], remaining);
    }
    assert_eq!(cell.throttle(at_ms(0), 1), [1, 16, 0, 2, 32]);
    assert_eq!(cell.throttle(at_ms(1_500), 1), [1, 16, 0, 1, 31]);
    assert_eq!(cell.throttle(at_ms(2_000), 1), [0, 16, 0, -1, 32]);
}

#[test]
fn a_quantity_above_the_burst_is_limited_with_no_retry() {
    let mut cell = Cell {
        policy: Throttle::new(4, 1, 1).unwrap(),
        state: None,
    };
    assert_eq!(cell.throttle(at_ms(0), 6), [1, 5, 5, -1, 0]);
    assert_eq!(cell.throttle(at_ms(0), 5), [0, 5, 0, -1, 5]);
}

#[test]
fn policies_outside_signed_nanoseconds_are_refused() {
    assert_eq!(
        Throttle::new(1, 0, 1).unwrap_err().argument(),
        "count_per_period"
    );
    assert_eq!(Throttle::new(1, 1, 0).unwrap_err().argument(), "period_s");
    assert_eq!(
        Throttle::new(1, 2_000_000_000, 1).unwrap_err().argument(),
        "count_per_period"
    );
    assert_eq!(
        Throttle::new(u64::MAX, 1, 1).unwrap_err().argument(),
        "max_burst"
    );
    assert!(Throttle::new(1, 1, u64::MAX).is_err());
    let fastest = Throttle::new(0, 1_000_000_000, 1).unwrap();
    let outcome = fastest.decide(
        None,
        Timestamp::from_micros(u64::MAX),
        Request::new(u64::MAX),
    );
    assert!(!outcome.decision.allowed);
}

#[test]
fn seconds_round_like_redis_cell() {
    assert_eq!(redis_cell_seconds(Duration::from_nanos(999_999)), 0);
    assert_eq!(redis_cell_seconds(Duration::from_millis(1)), 1);
    assert_eq!(redis_cell_seconds(Duration::from_millis(2_000)), 2);
    assert_eq!(redis_cell_seconds(Duration::from_micros(2_000_999)), 2);
    assert_eq!(redis_cell_seconds(Duration::from_millis(2_001)), 3);
}

/// redis-cell's algorithm as its source reads, in signed nanoseconds, with a key that
/// expires at its TAT.
struct RedisCell {
    interval: i128,
    tolerance: i128,
    limit: i128,
    tat: Option<i128>,
}

impl RedisCell {
    fn new(max_burst: i64, count: i64, period_s: i64) -> Self {
        let interval = ((period_s as f64 * 1e9) / count as f64) as i64 as i128;
        Self {
            interval,
            tolerance: interval * (i128::from(max_burst) + 1),
            limit: i128::from(max_burst) + 1,
            tat: None,
        }
    }

    fn throttle(&mut self, now: i128, quantity: i128) -> [i64; 5] {
        let stored = self.tat.filter(|&tat| tat > now);
        let tat = stored.unwrap_or(now);
        let increment = self.interval * quantity;
        let new_tat = if now > tat {
            now + increment
        } else {
            tat + increment
        };
        let diff = now - (new_tat - self.tolerance);
        let (limited, ttl, retry) = if diff < 0 {
            (
                true,
                tat - now,
                if increment <= self.tolerance {
                    -diff
                } else {
                    -1_000_000_000
                },
            )
        } else {
            if quantity > 0 {
                self.tat = Some(new_tat);
            }
            (false, new_tat - now, -1_000_000_000)
        };
        let next = self.tolerance - ttl;
        let remaining = if next > -self.interval {
            ((next / 1_000) as f64 / (self.interval / 1_000) as f64) as i64
        } else {
            0
        };
        let seconds =
            |ns: i128| (ns / 1_000_000_000 + i128::from(ns % 1_000_000_000 >= 1_000_000)) as i64;
        [
            i64::from(limited),
            self.limit as i64,
            remaining,
            seconds(retry),
            seconds(ttl),
        ]
    }
}

proptest! {
    #[test]
    fn replies_equal_redis_cell_at_the_same_instants(
        max_burst in 0i64..30,
        count in 1i64..100,
        period_s in 1i64..120,
        steps in proptest::collection::vec((0u64..5_000_000, 0u64..4), 1..80),
    ) {
        let mut ours = Cell { policy: Throttle::new(max_burst as u64, count as u64, period_s as u64).unwrap(), state: None };
        let mut theirs = RedisCell::new(max_burst, count, period_s);
        let mut now_us = T0_NS / 1_000;
        for (advance_us, quantity) in steps {
            now_us += advance_us;
            let expected = theirs.throttle(i128::from(now_us) * 1_000, i128::from(quantity));
            prop_assert_eq!(ours.throttle(Timestamp::from_micros(now_us), quantity), expected);
        }
    }
}

#[test]
fn a_new_policy_caps_the_wait_at_a_full_burst() {
    // 100 requests of burst at 1 per second, then a policy of burst 2 at 1 per second:
    // the wait is that of a throttle just used up (1 s), not 100 s.
    let big = Throttle::new(99, 1, 1).unwrap();
    let now = Timestamp::from_millis(1_000_000);
    let used = big.decide(None, now, Request::new(100)).update.unwrap();
    let small = Throttle::new(2, 1, 1).unwrap();
    let denied = small.decide(Some((&big, &used)), now, Request::new(1));
    assert!(!denied.decision.allowed);
    assert_eq!(
        denied.decision.retry_after,
        RetryAfter::After(Duration::from_secs(1))
    );
    assert_eq!(denied.decision.reset_after, Duration::from_secs(3));
}
