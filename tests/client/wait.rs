//! `wait`: a token bucket reserves with `MAXWAIT` (waiters served in arrival order, each
//! sleeping its reserved wait); other policies retry at each retry time; a deadline
//! too short is denied at once.

use crate::support::{Case, Protocol, each_case, figures, timed};
use redlimit::{Policy, Source};
use redlimit_test_support::Flavor;
use std::time::{Duration, Instant};

#[tokio::test]
async fn token_bucket_waiters_are_served_in_arrival_order() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        // One token every 100 ms; the first check empties the bucket and connects.
        let policy = Policy::token_bucket(1, 1, 100).unwrap();
        let key = case.key("wait:order");
        assert!(limiter.check(&key, &policy).await.unwrap().allowed);
        // A current-thread runtime polls the tasks in spawn order: each sends its
        // request before the next one starts, so spawn order is arrival order.
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (limiter, key) = (limiter.clone(), key.clone());
                tokio::spawn(async move {
                    timed(limiter.wait(&key, &policy, 1, Duration::from_secs(2))).await
                })
            })
            .collect();
        let mut waits = Vec::new();
        let mut slept = Vec::new();
        for waiter in waiters {
            let (decision, took) = waiter.await.unwrap();
            let decision = decision.unwrap();
            assert!(decision.allowed, "{}: {decision:?}", case.name());
            assert_eq!(decision.source, Source::Server, "{}", case.name());
            let wait = decision.retry_after.unwrap();
            assert!(
                took >= wait,
                "{}: slept {took:?}, less than its reserved {wait:?}",
                case.name()
            );
            assert!(
                took < wait + Duration::from_secs(1),
                "{}: slept {took:?} for {wait:?}",
                case.name()
            );
            waits.push(wait);
            slept.push(took);
        }
        println!(
            "{}: reserved waits {}; slept {}",
            case.name(),
            figures(&waits),
            figures(&slept)
        );
        for pair in waits.windows(2) {
            let step = pair[1].checked_sub(pair[0]).unwrap_or_default();
            assert!(
                (Duration::from_millis(60)..=Duration::from_millis(101)).contains(&step),
                "{}: each waiter one token (100 ms) after the previous: {waits:?}",
                case.name()
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_deadline_too_short_is_denied_at_once() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        // Each would have to wait about 10 s; the caller gives 100 ms.
        for (name, policy) in [
            ("bucket", Policy::token_bucket(1, 1, 10_000).unwrap()),
            ("sliding", Policy::sliding(1, 10_000).unwrap()),
            ("approx", Policy::sliding_approx(1, 10_000).unwrap()),
            ("fixed", Policy::fixed(1, 3_600_000).unwrap()),
        ] {
            let key = case.key(&format!("wait:short:{name}"));
            assert!(limiter.check(&key, &policy).await.unwrap().allowed);
            for max_wait in [Duration::from_millis(100), Duration::ZERO] {
                let (decision, took) = timed(limiter.wait(&key, &policy, 1, max_wait)).await;
                let decision = decision.unwrap();
                println!(
                    "{} {name}: max_wait {max_wait:?} denied in {}",
                    case.name(),
                    figures(&[took])
                );
                assert!(!decision.allowed, "{} {name}: {decision:?}", case.name());
                assert!(
                    decision.retry_after.unwrap() > Duration::from_secs(1),
                    "{} {name}: {decision:?}",
                    case.name()
                );
                assert!(
                    took < Duration::from_secs(2),
                    "{} {name}: {took:?}: it slept",
                    case.name()
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn other_policies_retry_until_allowed() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let mut policies = vec![
            ("sliding", Policy::sliding(1, 300).unwrap(), 299),
            ("approx", Policy::sliding_approx(1, 300).unwrap(), 0),
            ("fixed", Policy::fixed(1, 300).unwrap(), 0),
        ];
        if case.protocol == Protocol::Resp3 && case.server.binary().flavor == Flavor::Valkey91 {
            // One a second, in whole seconds: slow, so on one server only.
            policies.push(("throttle", Policy::throttle(0, 1, 1).unwrap(), 900));
        }
        for (name, policy, at_least_ms) in policies {
            let key = case.key(&format!("wait:poll:{name}"));
            let started = Instant::now();
            assert!(limiter.check(&key, &policy).await.unwrap().allowed);
            let (decision, took) =
                timed(limiter.wait(&key, &policy, 1, Duration::from_secs(3))).await;
            let decision = decision.unwrap();
            let since_first = started.elapsed();
            println!(
                "{} {name}: allowed again after {} (wait took {})",
                case.name(),
                figures(&[since_first]),
                figures(&[took])
            );
            assert!(decision.allowed, "{} {name}: {decision:?}", case.name());
            assert!(
                since_first >= Duration::from_millis(at_least_ms),
                "{} {name}: allowed after {since_first:?}",
                case.name()
            );
            assert!(took < Duration::from_secs(3), "{} {name}", case.name());
        }
    })
    .await;
}

#[tokio::test]
async fn a_dropped_waiter_keeps_its_reservation() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let policy = Policy::token_bucket(1, 1, 1_000).unwrap();
        let key = case.key("wait:dropped");
        assert!(limiter.check(&key, &policy).await.unwrap().allowed);
        let waiting = limiter.wait(&key, &policy, 1, Duration::from_secs(5));
        let cut = tokio::time::timeout(Duration::from_millis(300), waiting).await;
        assert!(cut.is_err(), "{}: it sleeps about 1 s", case.name());
        // The reservation stands: the next token is the reserved one's successor.
        let next = limiter.peek(&key, &policy, 1).await.unwrap();
        assert!(!next.allowed, "{}: {next:?}", case.name());
        assert!(
            next.retry_after.unwrap() > Duration::from_millis(1_000),
            "{}: {next:?}",
            case.name()
        );
    })
    .await;
}

#[tokio::test]
async fn waiting_without_a_limit_works_for_every_bucket() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        for (name, policy) in [
            ("slow", Policy::token_bucket(1, 1, 1_000).unwrap()),
            ("fast", Policy::token_bucket(1_000, 1_000, 1_000).unwrap()),
            ("faster", Policy::token_bucket(1, 1_000_000, 1).unwrap()),
        ] {
            let key = case.key(&format!("wait:forever:{name}"));
            let decision = limiter
                .wait(&key, &policy, 1, Duration::MAX)
                .await
                .unwrap_or_else(|e| panic!("{} {name}: {e}", case.name()));
            assert!(decision.allowed, "{} {name}: {decision:?}", case.name());
            assert_eq!(decision.retry_after, Some(Duration::ZERO));
        }
    })
    .await;
}
