use super::*;
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(T0 + ms)
}

/// A bucket driven through time, as a key in Redis would be.
struct Bucket {
    policy: TokenBucket,
    stored: Option<(TokenBucket, BucketState)>,
}

impl Bucket {
    fn new(capacity: u64, refill_tokens: u64, refill_ms: u64) -> Self {
        Self {
            policy: TokenBucket::new(capacity, refill_tokens, refill_ms).unwrap(),
            stored: None,
        }
    }

    fn take(&mut self, now: Timestamp, request: Request) -> Decision {
        let previous = self.stored.as_ref().map(|(p, s)| (p, s));
        let outcome = self.policy.decide(previous, now, request);
        if let Some(state) = outcome.update {
            self.stored = Some((self.policy, state));
        }
        outcome.decision
    }
}

fn after_ms(ms: u64) -> RetryAfter {
    RetryAfter::After(Duration::from_millis(ms))
}

#[test]
fn a_burst_drains_the_bucket_then_refill_readmits() {
    let mut bucket = Bucket::new(3, 1, 1_000);
    for remaining in [2, 1, 0] {
        let d = bucket.take(at(0), Request::new(1));
        assert!(d.allowed);
        assert_eq!(d.remaining, remaining);
        assert_eq!(d.retry_after, RetryAfter::Now);
    }
    let denied = bucket.take(at(0), Request::new(1));
    assert!(!denied.allowed);
    assert_eq!(denied.retry_after, after_ms(1_000));
    assert_eq!(denied.reset_after, Duration::from_millis(3_000));
    assert_eq!(
        bucket.take(at(999), Request::new(1)).retry_after,
        after_ms(1)
    );
    let allowed = bucket.take(at(1_000), Request::new(1));
    assert!(allowed.allowed);
    assert_eq!(allowed.reset_after, Duration::from_millis(3_000));
}

#[test]
fn denied_requests_consume_nothing() {
    let mut bucket = Bucket::new(1, 1, 1_000);
    bucket.take(at(0), Request::new(1));
    for ms in [100, 200, 300] {
        assert!(!bucket.take(at(ms), Request::new(1)).allowed);
    }
    assert!(bucket.take(at(1_000), Request::new(1)).allowed);
}

#[test]
fn refill_is_continuous() {
    let mut bucket = Bucket::new(10, 3, 1_000);
    assert!(bucket.take(at(0), Request::new(10)).allowed);
    // 3 tokens per second: the third token is there after exactly 1000 ms.
    assert_eq!(
        bucket.take(at(0), Request::new(3)).retry_after,
        after_ms(1_000)
    );
    // one token takes 333.33.. ms: rounded up to the microsecond.
    let one = bucket.take(at(0), Request::new(1)).retry_after;
    assert_eq!(one, RetryAfter::After(Duration::from_micros(333_334)));
    assert!(!bucket.take(at(333), Request::new(1)).allowed);
    assert!(bucket.take(at(334), Request::new(1)).allowed);
}

#[test]
fn cost_above_capacity_can_never_succeed() {
    let mut bucket = Bucket::new(5, 1, 1_000);
    let d = bucket.take(at(0), Request::new(6));
    assert!(!d.allowed);
    assert_eq!(d.retry_after, RetryAfter::Never);
    assert_eq!(d.remaining, 5);
}

#[test]
fn zero_cost_and_peek_answer_without_changing_anything() {
    let mut bucket = Bucket::new(2, 1, 1_000);
    let zero = bucket.take(at(0), Request::new(0));
    assert!(zero.allowed);
    assert_eq!(zero.remaining, 2);
    let peek = bucket.take(
        at(0),
        Request {
            peek: true,
            ..Request::new(2)
        },
    );
    assert!(peek.allowed);
    assert_eq!(peek.remaining, 0);
    assert!(bucket.stored.is_none());
}

#[test]
fn max_wait_borrows_in_arrival_order() {
    let mut bucket = Bucket::new(1, 1, 1_000);
    let wait = |ms| Request {
        max_wait_ms: ms,
        ..Request::new(1)
    };
    assert_eq!(bucket.take(at(0), wait(1_500)).retry_after, RetryAfter::Now);
    let second = bucket.take(at(0), wait(1_500));
    assert!(second.allowed);
    assert_eq!(second.retry_after, after_ms(1_000));
    assert_eq!(second.remaining, 0);
    assert_eq!(second.reset_after, Duration::from_millis(2_000));
    // The third would have to wait 2000 ms: more than 1500. It may retry in 500 ms.
    let third = bucket.take(at(0), wait(1_500));
    assert!(!third.allowed);
    assert_eq!(third.retry_after, after_ms(500));
    let later = bucket.take(at(500), wait(1_500));
    assert!(later.allowed);
    assert_eq!(later.retry_after, after_ms(1_500));
    // Without MAXWAIT nobody jumps the queue.
    assert_eq!(
        bucket.take(at(500), Request::new(1)).retry_after,
        after_ms(2_500)
    );
}

/// A stored time ahead of the clock (a pending act time, or a clock that moved back)
/// reads as the line extrapolated backwards: the deficit plus the refill until then.
#[test]
fn a_clock_that_moves_back_grants_nothing() {
    let mut bucket = Bucket::new(2, 1, 1_000);
    bucket.take(at(10_000), Request::new(2));
    let earlier = bucket.take(at(5_000), Request::new(1));
    assert!(!earlier.allowed);
    assert_eq!(earlier.remaining, 0);
    // 7 tokens missing at 5 s: one token at 11 s, 6 s from now.
    assert_eq!(earlier.retry_after, after_ms(6_000));
    assert_eq!(earlier.reset_after, Duration::from_millis(7_000));
    assert!(bucket.take(at(11_000), Request::new(1)).allowed);
}

#[test]
fn a_new_policy_keeps_the_usage() {
    let mut bucket = Bucket::new(10, 1, 1_000);
    bucket.take(at(0), Request::new(8));
    bucket.policy = TokenBucket::new(100, 1, 500).unwrap();
    let d = bucket.take(at(0), Request::new(1));
    assert_eq!(d.remaining, 91, "8 used before, 1 now, of 100");
    bucket.policy = TokenBucket::new(5, 1, 1_000).unwrap();
    let d = bucket.take(at(0), Request::new(1));
    assert!(!d.allowed, "9 used, capped at all 5 of the new capacity");
    assert_eq!(d.retry_after, after_ms(1_000), "one token refills in 1 s");
}

#[test]
fn a_downgrade_leaves_at_worst_an_empty_bucket() {
    // The reproduction: 1000 tokens used, then a bucket of 10 refilling in 10 s.
    let mut bucket = Bucket::new(1_000, 1, 1_000);
    bucket.take(at(0), Request::new(1_000));
    bucket.policy = TokenBucket::new(10, 1, 1_000).unwrap();
    let d = bucket.take(at(0), Request::new(1));
    assert!(!d.allowed);
    assert_eq!(d.retry_after, after_ms(1_000));
    assert_eq!(d.reset_after, Duration::from_millis(10_000));
    // An upgrade 500 ms later (the denied call stored nothing): the 1000 used at 0 are
    // capped at the 20 of the new bucket as of 0, half a token has come back since.
    bucket.policy = TokenBucket::new(20, 1, 1_000).unwrap();
    let d = bucket.take(at(500), Request::new(1));
    assert!(!d.allowed);
    assert_eq!(d.retry_after, after_ms(500));
    assert_eq!(d.reset_after, Duration::from_millis(19_500));
    // Back to the 10-token bucket: the retry announced at 0 (1 s) succeeds.
    bucket.policy = TokenBucket::new(10, 1, 1_000).unwrap();
    assert!(bucket.take(at(1_000), Request::new(1)).allowed);
}

#[test]
fn the_same_policy_keeps_a_borrowed_debt() {
    // MAXWAIT borrowing under the policy in force is not capped.
    let mut bucket = Bucket::new(2, 1, 1_000);
    let reserved = bucket.take(
        at(0),
        Request {
            max_wait_ms: 3_000,
            ..Request::new(5)
        },
    );
    assert!(reserved.allowed);
    assert_eq!(reserved.retry_after, after_ms(3_000));
    let d = bucket.take(at(0), Request::new(1));
    assert_eq!(d.retry_after, after_ms(4_000));
}

#[test]
fn idle_when_full_again() {
    let mut bucket = Bucket::new(4, 2, 1_000);
    bucket.take(at(0), Request::new(3));
    let (policy, state) = bucket.stored.unwrap();
    assert_eq!(policy.idle_at(&state), at(1_500));
}

#[test]
fn policies_that_cannot_compute_exactly_are_refused() {
    assert_eq!(
        TokenBucket::new(0, 1, 1).unwrap_err().to_string(),
        "capacity must be a positive integer"
    );
    assert_eq!(
        TokenBucket::new(1, 0, 1).unwrap_err().argument(),
        "refill_tokens"
    );
    assert_eq!(
        TokenBucket::new(1, 1, 0).unwrap_err().argument(),
        "refill_ms"
    );
    assert!(TokenBucket::new(u64::MAX, 1, 1).is_err());
    assert!(TokenBucket::new(1, 1, u64::MAX).is_err());
    assert_eq!(
        TokenBucket::new(1, u64::MAX, 1).unwrap_err().argument(),
        "refill_tokens"
    );
    assert_eq!(
        TokenBucket::new(1, 1, 10_000_000_000_001)
            .unwrap_err()
            .argument(),
        "refill_ms"
    );
    let ok = TokenBucket::new(1 << 30, crate::MAX_COUNT, 1 << 20).unwrap();
    assert!(ok.check_max_wait(1).is_err());
    assert!(
        TokenBucket::new(1, 1, 1)
            .unwrap()
            .check_max_wait(u64::MAX)
            .is_err()
    );
}

#[test]
fn extreme_values_never_overflow() {
    let policy = TokenBucket::new(1 << 30, crate::MAX_COUNT, 1 << 20).unwrap();
    let at_end = Timestamp::from_micros(u64::MAX);
    let outcome = policy.decide(None, at_end, Request::new(u64::MAX));
    assert_eq!(outcome.decision.retry_after, RetryAfter::Never);
    let state = BucketState {
        deficit: u64::MAX,
        at: Timestamp::EPOCH,
    };
    let d = policy
        .decide(Some((&policy, &state)), at_end, Request::new(1))
        .decision;
    assert!(d.allowed);
    let slow = TokenBucket::new(1, 1, 1 << 40).unwrap();
    let d = slow
        .decide(Some((&policy, &state)), Timestamp::EPOCH, Request::new(1))
        .decision;
    assert!(!d.allowed);
}

/// An exact rational number, kept in lowest terms with a positive denominator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ratio {
    num: i128,
    den: i128,
}

impl Ratio {
    fn new(num: i128, den: i128) -> Self {
        fn gcd(a: i128, b: i128) -> i128 {
            if b == 0 { a.abs() } else { gcd(b, a % b) }
        }
        let g = gcd(num, den).max(1) * den.signum();
        Self {
            num: num / g,
            den: den / g,
        }
    }
    fn int(n: i128) -> Self {
        Self::new(n, 1)
    }
    fn add(self, o: Self) -> Self {
        Self::new(self.num * o.den + o.num * self.den, self.den * o.den)
    }
    fn sub(self, o: Self) -> Self {
        self.add(Self::new(-o.num, o.den))
    }
    fn lt(self, o: Self) -> bool {
        self.num * o.den < o.num * self.den
    }
    fn min(self, o: Self) -> Self {
        if o.lt(self) { o } else { self }
    }
    fn floor(self) -> i128 {
        self.num.div_euclid(self.den)
    }
    fn ceil(self) -> i128 {
        -Self::new(-self.num, self.den).floor()
    }
}

/// The definition, in exact rationals: level(t) = min(capacity, level + elapsed * rate).
struct Model {
    capacity: Ratio,
    rate_per_us: Ratio,
    level: Ratio,
    last_us: i128,
}

impl Model {
    fn micros_to_gain(&self, tokens: Ratio) -> i128 {
        Ratio::new(
            tokens.num * self.rate_per_us.den,
            tokens.den * self.rate_per_us.num,
        )
        .ceil()
    }

    fn request(
        &mut self,
        now_us: i128,
        cost: i128,
        peek: bool,
        max_wait_ms: i128,
    ) -> (bool, i128, Option<i128>, i128) {
        // A clock behind the last change sees the level extrapolated backwards (less
        // than at the last change: the refill until then is not there yet), and a
        // change it makes is kept at the last change's time.
        let gained = Ratio::new(
            (now_us - self.last_us) * self.rate_per_us.num,
            self.rate_per_us.den,
        );
        let level = self.level.add(gained).min(self.capacity);
        let floor = Ratio::new(
            -max_wait_ms * 1_000 * self.rate_per_us.num,
            self.rate_per_us.den,
        );
        let after = level.sub(Ratio::int(cost));
        let wait = |this: &Self, tokens: Ratio| this.micros_to_gain(tokens).max(0);
        if after.lt(floor) {
            let never = self.capacity.sub(Ratio::int(cost)).lt(floor);
            let retry = (!never).then(|| wait(self, floor.sub(after)));
            return (
                false,
                level.floor().max(0),
                retry,
                wait(self, self.capacity.sub(level)),
            );
        }
        if !peek && cost > 0 {
            if now_us >= self.last_us {
                self.level = after;
                self.last_us = now_us;
            } else {
                self.level = after.sub(gained);
            }
        }
        let retry = if after.lt(Ratio::int(0)) {
            wait(self, Ratio::int(0).sub(after))
        } else {
            0
        };
        (
            true,
            after.floor().max(0),
            Some(retry),
            wait(self, self.capacity.sub(after)),
        )
    }
}

fn micros(retry: RetryAfter) -> Option<i128> {
    match retry {
        RetryAfter::Now => Some(0),
        RetryAfter::After(d) => Some(d.as_micros() as i128),
        RetryAfter::Never => None,
    }
}

proptest! {
    #[test]
    fn decisions_equal_exact_rational_arithmetic(
        capacity in 1u64..20,
        refill_tokens in 1u64..6,
        refill_ms in 1u64..5_000,
        steps in proptest::collection::vec((-1_000_000i64..3_000_000, 0u64..8, any::<bool>(), prop_oneof![Just(0u64), 0u64..5_000]), 1..60),
    ) {
        let mut bucket = Bucket::new(capacity, refill_tokens, refill_ms);
        let mut model = Model {
            capacity: Ratio::int(capacity.into()),
            rate_per_us: Ratio::new(refill_tokens.into(), i128::from(refill_ms) * 1_000),
            level: Ratio::int(capacity.into()),
            last_us: 0,
        };
        let mut now = 10_000_000i64;
        for (advance_us, cost, peek, max_wait_ms) in steps {
            // Mostly forward, sometimes back: a clock step must never grant more.
            now = (now + advance_us).max(0);
            let request = Request { cost, peek, max_wait_ms };
            let d = bucket.take(Timestamp::from_micros(T0 * 1_000 + now as u64), request);
            let (allowed, remaining, retry, reset) = model.request(now.into(), cost.into(), peek, max_wait_ms.into());
            prop_assert_eq!(d.allowed, allowed);
            prop_assert_eq!(i128::from(d.remaining), remaining);
            prop_assert_eq!(micros(d.retry_after), retry);
            prop_assert_eq!(d.reset_after.as_micros() as i128, reset);
        }
    }

    #[test]
    fn never_admits_more_than_capacity_plus_refill(
        capacity in 1u64..20,
        refill_ms in 1u64..2_000,
        steps in proptest::collection::vec((0u64..500_000, 1u64..4), 1..100),
    ) {
        let mut bucket = Bucket::new(capacity, 1, refill_ms);
        let (mut now, mut admitted) = (0u64, 0u64);
        for (advance_us, cost) in steps {
            now += advance_us;
            if bucket.take(Timestamp::from_micros(now), Request::new(cost)).allowed {
                admitted += cost;
            }
            prop_assert!(admitted <= capacity + now / (refill_ms * 1_000));
        }
    }
}
