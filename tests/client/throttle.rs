//! A throttle policy sends `RL.THROTTLE` and reads redis-cell's reply: limited 0/1,
//! seconds, `-1` retry when allowed.

use crate::support::{Case, each_case, raw_decide};
use redlimit::{Policy, Source};
use std::time::Duration;

#[tokio::test]
async fn throttle_answers_like_raw_rl_throttle() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        // Bursts of 5, then one every 6 s.
        let policy = Policy::throttle(4, 10, 60).unwrap();
        let (ours, twin) = (case.key("throttle:c"), case.key("throttle:r"));
        for cost in [1, 2, 0, 3, 1, 1, 1, 6] {
            let decision = limiter.check_cost(&ours, &policy, cost).await.unwrap();
            let [limited, limit, remaining, retry_s, reset_s] =
                raw_decide(con, &twin, &policy, cost, false);
            let context = format!("{} cost {cost}: {decision:?}", case.name());
            assert_eq!(decision.source, Source::Server, "{context}");
            assert_eq!(decision.allowed, limited == 0, "{context}");
            assert_eq!(
                (decision.limit, decision.remaining),
                (limit as u64, remaining as u64),
                "{context}"
            );
            let seconds = |d: Duration| d.as_secs() as i64;
            match decision.retry_after {
                Some(wait) if decision.allowed => {
                    assert_eq!((wait, retry_s), (Duration::ZERO, -1), "{context}");
                }
                Some(wait) => assert!((seconds(wait) - retry_s).abs() <= 1, "{context}"),
                None => assert_eq!(retry_s, -1, "{context}: never"),
            }
            assert!(
                (seconds(decision.reset_after) - reset_s).abs() <= 1,
                "{context}: reset {reset_s}"
            );
            assert_eq!(
                decision.reset_after.subsec_nanos(),
                0,
                "{context}: whole seconds"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn throttle_reads_with_cost_zero_and_refuses_what_rl_throttle_cannot_do() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let policy = Policy::throttle(1, 1, 60).unwrap();
        let key = case.key("throttle:read");
        limiter.check_cost(&key, &policy, 2).await.unwrap();
        let read = limiter.peek(&key, &policy, 0).await.unwrap();
        assert!(
            read.allowed && read.remaining == 0,
            "{}: {read:?}",
            case.name()
        );
        let error = limiter.peek(&key, &policy, 1).await.unwrap_err();
        assert!(error.is_invalid_argument(), "{}: {error}", case.name());
        let all = limiter.check_all(&[(&key, policy)], 1).await.unwrap_err();
        assert!(all.is_invalid_argument(), "{}: {all}", case.name());
        let denied = limiter.check(&key, &policy).await.unwrap();
        assert!(!denied.allowed, "{}: {denied:?}", case.name());
        let wait = denied.retry_after.unwrap();
        assert!(
            (Duration::from_secs(59)..=Duration::from_secs(61)).contains(&wait),
            "{}: one every 60 s: {denied:?}",
            case.name()
        );
    })
    .await;
}
