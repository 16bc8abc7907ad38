//! The denied-key cache: after the server denies a key, the same key, policy and an
//! equal or larger cost are answered locally until the server's retry time; then the
//! server again. A reset forgets the key.

use crate::support::{Case, each_case, each_case_in_turn, info_count};
use redlimit::{Policy, Source};
use std::time::{Duration, Instant};

#[tokio::test]
async fn denied_keys_are_answered_locally_until_their_retry_time() {
    each_case_in_turn(|case: Case| async move {
        let limiter = case.builder().deny_cache(100).build().unwrap();
        let con = &mut case.raw();
        let name = case.name();
        let policy = Policy::sliding(3, 400).unwrap();
        let key = case.key("cached");
        let first = limiter.check_cost(&key, &policy, 2).await.unwrap();
        assert!(first.allowed, "{name}: {first:?}");
        let calls = info_count(con, "redlimit_sliding_calls");

        // The cache keeps the denial from the moment the client sent it: between these.
        let sent = Instant::now();
        let denied = limiter.check_cost(&key, &policy, 2).await.unwrap();
        let answered = Instant::now();
        assert_eq!(
            (denied.allowed, denied.source),
            (false, Source::Server),
            "{name}"
        );
        let retry = denied.retry_after.unwrap();
        let cached = limiter.check_cost(&key, &policy, 2).await.unwrap();
        assert_eq!(
            (cached.allowed, cached.source),
            (false, Source::LocalCache),
            "{name}"
        );
        assert!(cached.retry_after.unwrap() <= retry, "{name}: {cached:?}");
        let larger = limiter.check_cost(&key, &policy, 3).await.unwrap();
        assert_eq!(
            larger.source,
            Source::LocalCache,
            "{name}: a larger cost is denied too"
        );
        let peek = limiter.peek(&key, &policy, 2).await.unwrap();
        assert_eq!(peek.source, Source::LocalCache, "{name}: {peek:?}");
        let other = Policy::sliding(30, 400).unwrap();
        let other = limiter.peek(&key, &other, 2).await.unwrap();
        assert_eq!(
            (other.allowed, other.source),
            (true, Source::Server),
            "{name}: another policy asks the server"
        );
        assert_eq!(
            info_count(con, "redlimit_sliding_calls") - calls,
            2,
            "{name}: the denial and the other policy reached the server, nothing else"
        );

        // Until the retry time the cache answers; then the server, which allows.
        let mut local = 0;
        let back = loop {
            let asked = Instant::now();
            let decision = limiter.check_cost(&key, &policy, 2).await.unwrap();
            if decision.source != Source::LocalCache {
                break decision;
            }
            assert!(!decision.allowed, "{name}: {decision:?}");
            assert!(
                asked < answered + retry,
                "{name}: cached past the retry time"
            );
            local += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        println!(
            "{name}: {local} local answers over {:?}, then {back:?} after {:?}",
            retry,
            sent.elapsed()
        );
        assert!(sent.elapsed() >= retry, "{name}");
        assert_eq!(back.source, Source::Server, "{name}");
        assert!(
            back.allowed,
            "{name}: the server's retry time is exact: {back:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn smaller_costs_throttles_and_reservations_ask_the_server() {
    each_case(|case: Case| async move {
        let limiter = case.builder().deny_cache(100).build().unwrap();
        let name = case.name();
        let policy = Policy::sliding(3, 3_600_000).unwrap();
        let key = case.key("smaller");
        limiter.check_cost(&key, &policy, 2).await.unwrap();
        assert!(!limiter.check_cost(&key, &policy, 2).await.unwrap().allowed);
        let one = limiter.check(&key, &policy).await.unwrap();
        assert_eq!((one.allowed, one.source), (true, Source::Server), "{name}");
        let zero = limiter.check_cost(&key, &policy, 0).await.unwrap();
        assert_eq!(
            (zero.allowed, zero.source),
            (true, Source::Server),
            "{name}"
        );

        let throttle = Policy::throttle(0, 1, 60).unwrap();
        let key = case.key("throttled");
        limiter.check(&key, &throttle).await.unwrap();
        for _ in 0..2 {
            let denied = limiter.check(&key, &throttle).await.unwrap();
            assert_eq!(
                (denied.allowed, denied.source),
                (false, Source::Server),
                "{name}"
            );
        }

        let bucket = Policy::token_bucket(1, 1, 60_000).unwrap();
        let key = case.key("reserved");
        limiter.check(&key, &bucket).await.unwrap();
        assert!(!limiter.check(&key, &bucket).await.unwrap().allowed);
        let wait = limiter
            .wait(&key, &bucket, 1, Duration::from_millis(10))
            .await
            .unwrap();
        assert_eq!(
            wait.source,
            Source::Server,
            "{name}: MAXWAIT asks the server"
        );
    })
    .await;
}

#[tokio::test]
async fn a_reset_forgets_the_cached_denial() {
    each_case(|case: Case| async move {
        let limiter = case.builder().deny_cache(100).build().unwrap();
        let name = case.name();
        let policy = Policy::sliding(1, 3_600_000).unwrap();
        let key = case.key("reset-cached");
        limiter.check(&key, &policy).await.unwrap();
        assert!(!limiter.check(&key, &policy).await.unwrap().allowed);
        let cached = limiter.check(&key, &policy).await.unwrap();
        assert_eq!(cached.source, Source::LocalCache, "{name}");
        assert_eq!(limiter.reset(&[&key]).await.unwrap(), 1, "{name}");
        let after = limiter.check(&key, &policy).await.unwrap();
        assert_eq!(
            (after.allowed, after.source),
            (true, Source::Server),
            "{name}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_cached_denial_still_answers_while_the_server_is_down() {
    use crate::fault::{Failing, Fault, builder};
    use redlimit::FailurePolicy;
    for binary in crate::support::binaries() {
        let mut failing = Failing::start(&binary, Fault::Kill);
        for protocol in crate::support::PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let url = protocol.url(failing.server());
            // A generous timeout: the server must answer the first two on a loaded
            // machine; the dead server refuses connections at once.
            let limiter = builder(&url, FailurePolicy::Open)
                .timeout(Duration::from_secs(2))
                .deny_cache(10)
                .build()
                .unwrap();
            let policy = Policy::sliding(1, 400).unwrap();
            assert!(limiter.check("k", &policy).await.unwrap().allowed);
            let sent = Instant::now();
            let denied = limiter.check("k", &policy).await.unwrap();
            let answered = Instant::now();
            assert_eq!(
                (denied.allowed, denied.source),
                (false, Source::Server),
                "{name}"
            );
            // The cached denial ends between these two.
            let until = sent + denied.retry_after.unwrap();
            let surely_over = answered + denied.retry_after.unwrap();
            failing.fail();
            // The cache answers without asking the dead server, until the retry time.
            let mut cached = 0;
            while Instant::now() + Duration::from_millis(50) < until {
                let decision = limiter.check("k", &policy).await.unwrap();
                assert_eq!(decision.source, Source::LocalCache, "{name}: {decision:?}");
                cached += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            sleep_until_instant(surely_over).await;
            let after = limiter.check("k", &policy).await.unwrap();
            assert_eq!(
                (after.allowed, after.source),
                (true, Source::FailedOpen),
                "{name}: then the failure policy"
            );
            println!("{name}: {cached} cached denials while down, then {after:?}");
            failing.recover();
        }
    }
}

async fn sleep_until_instant(instant: Instant) {
    tokio::time::sleep_until(instant.into()).await;
}
