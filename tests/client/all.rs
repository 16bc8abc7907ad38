//! `check_all` / `peek_all`: one `RL.ALL`, all or nothing, answered like the raw command.

use crate::support::{Case, assert_like_raw, each_case, exists};
use redis::{Connection, Value};
use redlimit::{Policy, Source};
use redlimit_test_support::digest_value;
use std::time::Duration;

fn limits(case: &Case, prefix: &str) -> [(String, Policy); 3] {
    [
        (
            case.key(&format!("{{{prefix}}}:minute")),
            Policy::sliding(2, 60_000).unwrap(),
        ),
        (
            case.key(&format!("{{{prefix}}}:hour")),
            Policy::fixed(3, 3_600_000).unwrap(),
        ),
        (
            case.key(&format!("{{{prefix}}}:bucket")),
            Policy::token_bucket(10, 1, 60_000).unwrap(),
        ),
    ]
}

/// The raw `RL.ALL` over the same limits: the overall answer and each decision.
fn raw_all(con: &mut Connection, limits: &[(String, Policy)], cost: u64) -> (i64, Vec<[i64; 5]>) {
    let mut args = vec!["RL.ALL".to_owned(), limits.len().to_string()];
    args.extend(limits.iter().map(|(key, _)| key.clone()));
    for (_, policy) in limits {
        args.extend(match policy {
            Policy::TokenBucket(p) => vec![
                "TOKENBUCKET".to_owned(),
                p.capacity().to_string(),
                p.refill_tokens().to_string(),
                p.refill_ms().to_string(),
            ],
            Policy::Fixed(p) => vec![
                "FIXED".to_owned(),
                p.limit().to_string(),
                p.window_ms().to_string(),
            ],
            Policy::Sliding(p) => vec![
                "SLIDING".to_owned(),
                p.limit().to_string(),
                p.window_ms().to_string(),
            ],
            other => panic!("not in these tests: {other:?}"),
        });
    }
    args.extend(["COST".to_owned(), cost.to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reply: Vec<Value> = crate::support::raw_command(&args).query(con).unwrap();
    let overall: i64 = redis::from_redis_value(&reply[0]).unwrap();
    let decisions = reply[1..]
        .iter()
        .map(|value| {
            let five: Vec<i64> = redis::from_redis_value(value).unwrap();
            five.try_into().unwrap()
        })
        .collect();
    (overall, decisions)
}

#[tokio::test]
async fn check_all_counts_everywhere_or_nowhere_like_rl_all() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        let (ours, twins) = (limits(&case, "ours"), limits(&case, "twin"));
        // The minute limit (2) denies the third request; the others would allow it.
        for (round, expected) in [true, true, false, false].into_iter().enumerate() {
            let all = limiter.check_all(&ours, 1).await.unwrap();
            let (overall, raw) = raw_all(con, &twins, 1);
            let context = format!("{} round {round}: {all:?}", case.name());
            assert_eq!(all.allowed, expected, "{context}");
            assert_eq!(overall == 1, expected, "{context}: raw");
            assert_eq!(all.source, Source::Server, "{context}");
            assert_eq!(all.decisions.len(), 3, "{context}");
            for (decision, raw) in all.decisions.iter().zip(raw) {
                assert_eq!(decision.source, Source::Server, "{context}");
                assert_like_raw(decision, raw, 250, &context);
            }
        }
        let denied = limiter.check_all(&ours, 1).await.unwrap();
        let wait = denied.retry_after().unwrap();
        assert!(
            wait > Duration::from_secs(59) && wait <= Duration::from_secs(60),
            "{}: the minute's first request leaves then: {denied:?}",
            case.name()
        );
        // Two counted, not four: the hour and the bucket saw only the allowed ones.
        let [_, (hour, hour_policy), (bucket, bucket_policy)] = &ours;
        let hour_left = limiter.peek(hour, hour_policy, 0).await.unwrap().remaining;
        let bucket_left = limiter
            .peek(bucket, bucket_policy, 0)
            .await
            .unwrap()
            .remaining;
        assert_eq!((hour_left, bucket_left), (1, 8), "{}", case.name());
    })
    .await;
}

#[tokio::test]
async fn peek_all_and_cost_zero_change_nothing() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        let fresh = limits(&case, "fresh");
        let peek = limiter.peek_all(&fresh, 2).await.unwrap();
        assert!(peek.allowed, "{}: {peek:?}", case.name());
        let left: Vec<u64> = peek.decisions.iter().map(|d| d.remaining).collect();
        assert_eq!(left, [0, 1, 8], "{}", case.name());
        let zero = limiter.check_all(&fresh, 0).await.unwrap();
        assert!(zero.allowed, "{}: {zero:?}", case.name());
        for (key, _) in &fresh {
            assert!(!exists(con, key), "{}: {key} written", case.name());
        }

        let used = limits(&case, "used");
        assert!(limiter.check_all(&used, 2).await.unwrap().allowed);
        let before: Vec<String> = used.iter().map(|(k, _)| digest_value(con, k)).collect();
        let denied = limiter.peek_all(&used, 1).await.unwrap();
        assert!(!denied.allowed, "{}: {denied:?}", case.name());
        assert_eq!(
            denied
                .decisions
                .iter()
                .map(|d| d.allowed)
                .collect::<Vec<_>>(),
            [false, true, true],
            "{}",
            case.name()
        );
        let after: Vec<String> = used.iter().map(|(k, _)| digest_value(con, k)).collect();
        assert_eq!(before, after, "{}: a peek writes nothing", case.name());
    })
    .await;
}

#[tokio::test]
async fn check_all_refuses_no_limits_throttles_and_wrong_types() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        let none: [(String, Policy); 0] = [];
        let empty = limiter.check_all(&none, 1).await.unwrap_err();
        assert!(empty.is_invalid_argument(), "{}: {empty}", case.name());
        let empty = limiter.peek_all(&none, 1).await.unwrap_err();
        assert!(empty.is_invalid_argument(), "{}: {empty}", case.name());

        let many: Vec<(String, Policy)> = (0..33)
            .map(|i| {
                (
                    case.key(&format!("{{many}}:{i}")),
                    Policy::fixed(1, 1_000).unwrap(),
                )
            })
            .collect();
        let too_many = limiter.check_all(&many, 1).await.unwrap_err();
        assert!(
            too_many.is_invalid_argument(),
            "{}: {too_many}",
            case.name()
        );
        assert!(
            limiter.check_all(&many[..32], 1).await.unwrap().allowed,
            "{}: 32 limits",
            case.name()
        );

        let mut with_throttle = limits(&case, "throttled").to_vec();
        with_throttle.push((
            case.key("{throttled}:t"),
            Policy::throttle(1, 1, 1).unwrap(),
        ));
        let throttle = limiter.check_all(&with_throttle, 1).await.unwrap_err();
        assert!(
            throttle.is_invalid_argument(),
            "{}: {throttle}",
            case.name()
        );

        let typed = limits(&case, "typed");
        let _: () = redis::cmd("SET")
            .arg(&typed[1].0)
            .arg("x")
            .query(con)
            .unwrap();
        let wrong = limiter.check_all(&typed, 1).await.unwrap_err();
        assert!(wrong.is_wrong_type(), "{}: {wrong}", case.name());
        assert!(
            !exists(con, &typed[0].0),
            "{}: nothing counted",
            case.name()
        );
        assert!(
            !exists(con, &typed[2].0),
            "{}: nothing counted",
            case.name()
        );
    })
    .await;
}
