//! `check`, `check_cost` and `peek` answer what the module's raw commands answer, over
//! RESP2 and RESP3, for every rate algorithm.

use crate::support::{Case, assert_like_raw, each_case, exists, raw_decide};
use redlimit::{Policy, Source};
use redlimit_test_support::digest_value;

/// Durations of a client call and its raw twin differ by the time between them.
const SLACK_MS: i64 = 250;

fn policies() -> [(&'static str, Policy); 4] {
    [
        ("bucket", Policy::token_bucket(5, 1, 60_000).unwrap()),
        ("fixed", Policy::fixed(5, 3_600_000).unwrap()),
        ("sliding", Policy::sliding(5, 60_000).unwrap()),
        ("approx", Policy::sliding_approx(5, 60_000).unwrap()),
    ]
}

#[tokio::test]
async fn check_and_check_cost_answer_like_the_raw_commands() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        for (name, policy) in policies() {
            let (ours, twin) = (
                case.key(&format!("c:{name}")),
                case.key(&format!("r:{name}")),
            );
            // 1 + 2 of 5; 0 asks; 3 does not fit; 2 fits; 1 does not; 6 never can.
            for cost in [1, 2, 0, 3, 2, 1, 6] {
                let decision = if cost == 1 {
                    limiter.check(&ours, &policy).await
                } else {
                    limiter.check_cost(&ours, &policy, cost).await
                }
                .unwrap();
                let raw = raw_decide(con, &twin, &policy, cost, false);
                let context = format!("{} {name} cost {cost}", case.name());
                assert_eq!(decision.source, Source::Server, "{context}");
                assert_like_raw(&decision, raw, SLACK_MS, &context);
            }
            let remaining: Vec<u64> = {
                let mut left = Vec::new();
                for cost in [1, 1] {
                    left.push(limiter.check_cost(&ours, &policy, cost).await.unwrap());
                }
                left.iter().map(|d| d.remaining).collect()
            };
            assert_eq!(remaining, [0, 0], "{} {name}: exhausted", case.name());
        }
    })
    .await;
}

#[tokio::test]
async fn cost_zero_and_peek_answer_without_counting() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        for (name, policy) in policies() {
            let context = format!("{} {name}", case.name());
            let fresh = case.key(&format!("fresh:{name}"));
            let zero = limiter.check_cost(&fresh, &policy, 0).await.unwrap();
            assert!(zero.allowed, "{context}: {zero:?}");
            assert_eq!((zero.limit, zero.remaining), (5, 5), "{context}: {zero:?}");
            let peek = limiter.peek(&fresh, &policy, 2).await.unwrap();
            assert!(peek.allowed, "{context}: {peek:?}");
            assert_eq!(peek.remaining, 3, "{context}: what would be left");
            assert!(!exists(con, &fresh), "{context}: nothing written");

            let used = case.key(&format!("used:{name}"));
            limiter.check_cost(&used, &policy, 4).await.unwrap();
            let before = digest_value(con, &used);
            let fits = limiter.peek(&used, &policy, 1).await.unwrap();
            let too_much = limiter.peek(&used, &policy, 2).await.unwrap();
            let zero = limiter.check_cost(&used, &policy, 0).await.unwrap();
            assert_eq!(
                (fits.allowed, fits.remaining),
                (true, 0),
                "{context}: {fits:?}"
            );
            assert!(!too_much.allowed, "{context}: {too_much:?}");
            assert!(too_much.retry_after.unwrap() > std::time::Duration::ZERO);
            assert_eq!(
                (zero.allowed, zero.remaining),
                (true, 1),
                "{context}: {zero:?}"
            );
            assert_eq!(digest_value(con, &used), before, "{context}: unchanged");
            let raw = raw_decide(con, &used, &policy, 2, true);
            assert_like_raw(&too_much, raw, SLACK_MS, &context);
        }
    })
    .await;
}

#[tokio::test]
async fn keys_are_bytes() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let policy = Policy::fixed(1, 60_000).unwrap();
        let key = [
            case.key("bin:").as_bytes(),
            &[0xff, 0x00, 0xfe, b' ', b'\n'],
        ]
        .concat();
        assert!(limiter.check(&key, &policy).await.unwrap().allowed);
        assert!(!limiter.check(&key, &policy).await.unwrap().allowed);
        let status = limiter.status(&key).await.unwrap().unwrap();
        assert_eq!(status.decision.remaining, 0, "{}", case.name());
    })
    .await;
}
