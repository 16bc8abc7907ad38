//! A token bucket holding a reservation that waits for *another* bucket of its
//! `RL.ALL ... MAXWAIT` is stored anchored at that reservation's act time `A`: the
//! deficit at `A`, the line extrapolated backwards before it. Hand-computed numbers:
//! both buckets hold 10 tokens and refill one token per second (one token is 10^6
//! units, one unit arrives every microsecond).
//!
//! At 0 s bucket `b` is emptied; then one call reserves 4 tokens of `a` and 5 of `b`:
//! `b` has them at 5 s, so the call acts at `A` = 5 s and `a` is charged as of then.
//! Measured at 0 s, `a` misses the 5 tokens it could not have held until 5 s plus the 4
//! charged: 9 tokens; stored at 5 s, 4 tokens.

use redlimit_core::{
    Adjustment, AllRequest, BucketState, Limiter, Policy, Request, RetryAfter, Timestamp,
    TokenBucket, WrongAlgorithm, decide_each,
};
use std::time::Duration;

const T0_MS: u64 = 1_700_000_000_000;
const TOKEN: u64 = 1_000_000;

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(T0_MS + ms)
}

fn bucket() -> TokenBucket {
    TokenBucket::new(10, 1, 1_000).unwrap()
}

fn state(limiter: &Limiter) -> BucketState {
    match limiter {
        Limiter::TokenBucket(_, state) => *state,
        other => panic!("not a token bucket: {other:?}"),
    }
}

/// Bucket `a` after the reservation described in the module docs.
fn reserved() -> Limiter {
    let policy = Policy::TokenBucket(bucket());
    let emptied = policy.decide(None, at(0), Request::new(10)).unwrap();
    let b = emptied.update.unwrap();
    let call = [("a", policy, 4), ("b", policy, 5)];
    let load = |_, key: &&str| Ok::<_, WrongAlgorithm>((*key == "b").then(|| b.clone()));
    let wait = AllRequest {
        peek: false,
        max_wait_ms: 10_000,
    };
    let outcome = decide_each(&call, at(0), wait, load).unwrap();
    assert!(outcome.allowed);
    let five = RetryAfter::After(Duration::from_secs(5));
    assert_eq!(outcome.decisions[0].retry_after, five);
    assert_eq!(outcome.decisions[0].remaining, 1, "10 - 9 tokens");
    let (index, a) = outcome.updates[0].clone();
    assert_eq!(index, 0);
    a
}

#[test]
fn a_bucket_waiting_for_another_is_stored_at_the_act_time() {
    let a = reserved();
    let expected = BucketState {
        deficit: 4 * TOKEN,
        at: at(5_000),
    };
    assert_eq!(state(&a), expected);
    assert_eq!(Limiter::decode(&a.encode()).unwrap(), a);
}

#[test]
fn decisions_before_the_act_time_see_the_line_and_keep_the_anchor() {
    let policy = Policy::TokenBucket(bucket());
    let a = reserved();
    let peek = Request {
        peek: true,
        ..Request::new(1)
    };
    // At 2 s: 4 + 3 tokens missing, 3 left (2 after a cost of 1, full again 8 s later).
    let status = policy.decide(Some(&a), at(2_000), peek).unwrap();
    assert_eq!(status.decision.remaining, 2);
    assert_eq!(status.decision.reset_after, Duration::from_secs(8));
    // Taking those 3 at 2 s: 10 missing now, 7 at 5 s, still anchored at 5 s.
    let taken = policy.decide(Some(&a), at(2_000), Request::new(3)).unwrap();
    assert!(taken.decision.allowed);
    assert_eq!(taken.decision.remaining, 0);
    let taken = taken.update.unwrap();
    let expected = BucketState {
        deficit: 7 * TOKEN,
        at: at(5_000),
    };
    assert_eq!(state(&taken), expected);
    // A fourth token at 2 s is there in 1 s.
    let denied = policy
        .decide(Some(&taken), at(2_000), Request::new(1))
        .unwrap();
    assert!(!denied.decision.allowed);
    assert_eq!(
        denied.decision.retry_after,
        RetryAfter::After(Duration::from_secs(1))
    );
    // After the act time the bucket refills as any: 6 missing at 6 s.
    let later = policy
        .decide(Some(&taken), at(6_000), Request::new(4))
        .unwrap();
    assert!(later.decision.allowed);
    assert_eq!(later.decision.remaining, 0);
    let expected = BucketState {
        deficit: 10 * TOKEN,
        at: at(6_000),
    };
    assert_eq!(state(&later.update.unwrap()), expected);
}

#[test]
fn a_refund_before_the_act_time_loses_the_refill_until_then() {
    let policy = Policy::TokenBucket(bucket());
    let a = reserved();
    // At 2 s, 4 tokens back without SINCE: 3 s until the act time, 3 tokens of refill
    // a bucket charged less could have lost (full meanwhile). 1 comes back: 3 at 5 s.
    let refund = policy
        .adjust(Some(&a), at(2_000), Adjustment::Refund(4))
        .unwrap();
    let expected = BucketState {
        deficit: 3 * TOKEN,
        at: at(5_000),
    };
    assert_eq!(state(refund.update.as_ref().unwrap()), expected);
    // 3 + 3 missing at 2 s: 4 left, 3 after a cost of 1.
    assert_eq!(refund.decision.remaining, 3);
    // With SINCE 1000 (the refunded charge counted at 1 s): 4 s of refill, nothing back.
    let since = Adjustment::Refund(4).since(1_000);
    let outcome = policy.adjust(Some(&a), at(2_000), since).unwrap();
    assert_eq!(outcome.update, None);
    // A refund larger than the line leaves the bucket full at the act time, never above.
    let all = policy
        .adjust(Some(&a), at(2_000), Adjustment::Refund(100))
        .unwrap();
    let full_at_act = BucketState {
        deficit: 0,
        at: at(5_000),
    };
    assert_eq!(state(all.update.as_ref().unwrap()), full_at_act);
    assert_eq!(
        all.decision.remaining, 6,
        "3 missing at 2 s, less a cost of 1"
    );
}

#[test]
fn a_refund_after_the_act_time_is_as_on_any_bucket() {
    let policy = Policy::TokenBucket(bucket());
    let a = reserved();
    // At 6 s, 3 missing; 2 back of a charge made 1 s ago: 1 of refill lost, 1 back.
    let since = Adjustment::Refund(2).since(1_000);
    let outcome = policy.adjust(Some(&a), at(6_000), since).unwrap();
    let expected = BucketState {
        deficit: 2 * TOKEN,
        at: at(6_000),
    };
    assert_eq!(state(outcome.update.as_ref().unwrap()), expected);
    // A charge before the act time stays anchored: 2 more at 2 s, 6 missing at 5 s.
    let charged = policy
        .adjust(Some(&a), at(2_000), Adjustment::Charge(2))
        .unwrap();
    let expected = BucketState {
        deficit: 6 * TOKEN,
        at: at(5_000),
    };
    assert_eq!(state(charged.update.as_ref().unwrap()), expected);
}
