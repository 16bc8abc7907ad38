//! A policy change (a tier downgrade or upgrade) carries the usage over, capped at the
//! new limit, and `retry_after` stays honest: a denied request retried after the wait it
//! was given succeeds, however the key was used under the old policy. Denied calls store
//! nothing, so the cap must not move with the clock.

use core::time::Duration;
use proptest::prelude::*;
use redlimit_core::{
    FixedWindow, Limiter, Policy, Request, RetryAfter, SlidingCounter, SlidingWindow, Throttle,
    Timestamp, TokenBucket,
};

const START_MS: u64 = 1_700_000_000_000;

/// A policy of the algorithm `kind` with small numbers.
fn policy(kind: u8, limit: u64, period_ms: u64) -> Policy {
    match kind {
        0 => Policy::TokenBucket(TokenBucket::new(limit, 1 + limit / 3, period_ms).unwrap()),
        1 => Policy::Fixed(FixedWindow::new(limit, period_ms).unwrap()),
        2 => Policy::Sliding(SlidingWindow::new(limit, period_ms).unwrap()),
        3 => Policy::SlidingApprox(SlidingCounter::new(limit, period_ms).unwrap()),
        _ => Policy::Throttle(
            Throttle::new(limit - 1, 1 + limit / 4, 1 + period_ms / 1_000).unwrap(),
        ),
    }
}

fn limit_of(policy: &Policy) -> u64 {
    policy
        .decide(
            None,
            Timestamp::from_millis(START_MS),
            Request {
                peek: true,
                ..Request::new(0)
            },
        )
        .unwrap()
        .decision
        .limit
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_denied_retry_after_a_policy_change_succeeds_when_announced(
        kind in 0u8..5,
        old in (1u64..30, 1u64..5_000),
        new in (1u64..30, 1u64..5_000),
        traffic in prop::collection::vec((0u64..800, 1u64..6), 1..30),
        gap_ms in 0u64..3_000,
        back_ms in prop::sample::select(vec![0u64, 0, 1, 300, 2_000, 20_000]),
        cost in 1u64..4,
    ) {
        let old = policy(kind, old.0, old.1);
        let new = policy(kind, new.0, new.1);
        let mut stored: Option<Limiter> = None;
        let mut now_ms = START_MS;
        for (dt, cost) in traffic {
            now_ms += dt;
            let outcome = old.decide(stored.as_ref(), Timestamp::from_millis(now_ms), Request::new(cost)).unwrap();
            if let Some(update) = outcome.update {
                stored = Some(update);
            }
        }
        // Later, or earlier (a clock stepped back) than the last call.
        now_ms = (now_ms + gap_ms).saturating_sub(back_ms);
        let cost = cost.min(limit_of(&new));
        let now = Timestamp::from_millis(now_ms);
        let first = new.decide(stored.as_ref(), now, Request::new(cost)).unwrap();
        if first.decision.allowed {
            return Ok(());
        }
        let RetryAfter::After(wait) = first.decision.retry_after else {
            return Err(TestCaseError::fail(format!("cost {cost} fits the limit: {first:?}")));
        };
        // Never worse than a limiter of the new policy just used up: with periods of at
        // most 5 s, a bucket refills in 3 periods, GCRA frees 3 units in 3 intervals and
        // the approximate window needs at most two windows.
        let most = Duration::from_millis(3 * 5_000 + 1_000 + back_ms + 24_000);
        prop_assert!(wait <= most, "{wait:?}");
        // The same request, retried at the announced moment (+1 ms: replies are in ms).
        let retry = Timestamp::from_micros(now.as_micros() + wait.as_micros() as u64 + 1_000);
        let second = new.decide(stored.as_ref(), retry, Request::new(cost)).unwrap();
        prop_assert!(second.decision.allowed, "first {first:?}, then {second:?}");
    }
}
