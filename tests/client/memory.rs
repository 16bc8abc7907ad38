//! The in-memory backend (`Backend::memory()`) runs the module's algorithms: the same
//! sequence of operations gets the same answers from memory and from the server.

use crate::support::{Case, each_case};
use redlimit::{Concurrency, Decision, Policy, RateLimiter, Source};

/// The two answers agree: same outcome and counts, durations within `slack_ms` (the
/// two clocks are read at slightly different moments; throttles answer in seconds).
#[track_caller]
fn assert_same(memory: &Decision, server: &Decision, slack_ms: u128, context: &str) {
    assert_eq!(
        (memory.allowed, memory.limit, memory.remaining),
        (server.allowed, server.limit, server.remaining),
        "{context}: memory {memory:?}, server {server:?}"
    );
    assert_eq!(memory.source, Source::Memory, "{context}");
    assert_eq!(server.source, Source::Server, "{context}");
    let near =
        |a: std::time::Duration, b: std::time::Duration| a.abs_diff(b).as_millis() <= slack_ms;
    let retry = match (memory.retry_after, server.retry_after) {
        (Some(a), Some(b)) => near(a, b),
        (a, b) => a == b,
    };
    assert!(retry, "{context}: memory {memory:?}, server {server:?}");
    assert!(
        near(memory.reset_after, server.reset_after),
        "{context}: memory {memory:?}, server {server:?}"
    );
}

#[tokio::test]
async fn memory_and_server_give_the_same_decisions() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let server = case.limiter();
        let memory = RateLimiter::memory();
        for (name, policy, slack_ms) in [
            ("bucket", Policy::token_bucket(5, 1, 60_000).unwrap(), 250),
            ("fixed", Policy::fixed(5, 3_600_000).unwrap(), 250),
            ("sliding", Policy::sliding(5, 60_000).unwrap(), 250),
            ("approx", Policy::sliding_approx(5, 60_000).unwrap(), 250),
            ("throttle", Policy::throttle(4, 10, 60).unwrap(), 1_000),
        ] {
            let key = case.key(&format!("memory:{name}"));
            for cost in [1, 2, 0, 3, 2, 1, 6, 1] {
                let context = format!("{} {name} cost {cost}", case.name());
                let ours = memory.check_cost(&key, &policy, cost).await.unwrap();
                let theirs = server.check_cost(&key, &policy, cost).await.unwrap();
                assert_same(&ours, &theirs, slack_ms, &context);
                if !matches!(policy, Policy::Throttle(_)) {
                    let ours = memory.peek(&key, &policy, 1).await.unwrap();
                    let theirs = server.peek(&key, &policy, 1).await.unwrap();
                    assert_same(&ours, &theirs, slack_ms, &format!("{context} peek"));
                }
            }
            let (ours, theirs) = (
                memory.status(&key).await.unwrap().unwrap(),
                server.status(&key).await.unwrap().unwrap(),
            );
            assert_eq!(ours.policy, theirs.policy, "{} {name}", case.name());
            if !matches!(policy, Policy::Throttle(_)) {
                // (A throttle's status is in milliseconds, its decisions in seconds.)
                assert_same(&ours.decision, &theirs.decision, slack_ms, &case.name());
            }
        }
    })
    .await;
}

#[tokio::test]
async fn memory_and_server_agree_on_all_or_nothing_and_leases() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let server = case.limiter();
        let memory = RateLimiter::memory();
        let name = case.name();
        let limits = [
            (case.key("{m}:minute"), Policy::sliding(2, 60_000).unwrap()),
            (case.key("{m}:hour"), Policy::fixed(3, 3_600_000).unwrap()),
            (
                case.key("{m}:bucket"),
                Policy::token_bucket(10, 1, 60_000).unwrap(),
            ),
        ];
        for cost in [1, 1, 1, 0, 2] {
            let ours = memory.check_all(&limits, cost).await.unwrap();
            let theirs = server.check_all(&limits, cost).await.unwrap();
            assert_eq!(ours.allowed, theirs.allowed, "{name} cost {cost}");
            assert_eq!(ours.source, Source::Memory, "{name}");
            for (a, b) in ours.decisions.iter().zip(&theirs.decisions) {
                assert_same(a, b, 250, &format!("{name} all cost {cost}"));
            }
        }
        let two = Concurrency::new(2, 30_000).unwrap();
        let key = case.key("memory:leases");
        for id in ["a", "b", "c", "a"] {
            let ours = memory.acquire(&key, &two, id).await.unwrap();
            let theirs = server.acquire(&key, &two, id).await.unwrap();
            assert_same(&ours, &theirs, 250, &format!("{name} acquire {id}"));
        }
        for id in ["a", "a", "z"] {
            assert_eq!(
                memory.release(&key, id).await.unwrap(),
                server.release(&key, id).await.unwrap(),
                "{name} release {id}"
            );
        }
        let ours = memory.acquire(&key, &two, "c").await.unwrap();
        let theirs = server.acquire(&key, &two, "c").await.unwrap();
        assert_same(&ours, &theirs, 250, &format!("{name} acquire c again"));
        assert_eq!(
            memory.reset(&[&key, &limits[0].0]).await.unwrap(),
            server.reset(&[&key, &limits[0].0]).await.unwrap(),
            "{name} reset"
        );
    })
    .await;
}
