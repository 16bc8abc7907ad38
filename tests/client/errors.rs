//! Errors: a key of another type or algorithm is `is_wrong_type()` (whatever the failure
//! policy: the server answered), values out of range are `is_invalid_argument()`, and a
//! refused permission is a server error. None of them opens the breaker. A server
//! without the module is a backend failure: the failure policy answers and the breaker
//! counts it.

use crate::support::{Case, binaries, each_case};
use redlimit::{Backend, Concurrency, FailurePolicy, Policy, RateLimiter, Source};
use redlimit_test_support::ServerBuilder;
use std::time::Duration;

const POLICIES: [FailurePolicy; 4] = [
    FailurePolicy::Open,
    FailurePolicy::Closed,
    FailurePolicy::Fallback,
    FailurePolicy::Error,
];

#[tokio::test]
async fn another_type_or_algorithm_is_wrong_type_under_every_failure_policy() {
    each_case(|case: Case| async move {
        let con = &mut case.raw();
        let name = case.name();
        let (string, bucket_key) = (case.key("e:string"), case.key("e:bucket"));
        let _: () = redis::cmd("SET").arg(&string).arg("x").query(con).unwrap();
        let bucket = Policy::token_bucket(5, 1, 1_000).unwrap();
        let fixed = Policy::fixed(5, 1_000).unwrap();
        let leases = Concurrency::new(1, 1_000).unwrap();
        for failure in POLICIES {
            // A threshold of 1: one failure counted by mistake would open the breaker.
            let limiter = case
                .builder()
                .on_failure(failure)
                .circuit_breaker(1, Duration::from_secs(60))
                .build()
                .unwrap();
            limiter.check(&bucket_key, &bucket).await.unwrap();
            let errors = [
                limiter.check(&string, &bucket).await.unwrap_err(),
                limiter.check(&bucket_key, &fixed).await.unwrap_err(),
                limiter.peek(&bucket_key, &fixed, 1).await.unwrap_err(),
                limiter
                    .acquire(&bucket_key, &leases, "a")
                    .await
                    .unwrap_err(),
                limiter.release(&bucket_key, "a").await.unwrap_err(),
                limiter.status(&string).await.unwrap_err(),
                limiter
                    .wait(&string, &bucket, 1, Duration::from_secs(1))
                    .await
                    .unwrap_err(),
                limiter
                    .check_all(&[(&bucket_key, fixed)], 1)
                    .await
                    .unwrap_err(),
            ];
            for error in errors {
                assert!(error.is_wrong_type(), "{name} {failure:?}: {error}");
                assert!(!error.is_unavailable(), "{name} {failure:?}: {error}");
            }
            let after = limiter.check(&bucket_key, &bucket).await.unwrap();
            assert_eq!(
                after.source,
                Source::Server,
                "{name} {failure:?}: breaker closed"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn values_out_of_range_are_invalid_arguments() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let name = case.name();
        assert!(
            Policy::token_bucket(0, 1, 1_000)
                .unwrap_err()
                .to_string()
                .contains("capacity")
        );
        assert!(Policy::fixed(1, 0).is_err() && Policy::sliding(1 << 21, 1_000).is_err());
        assert!(Concurrency::new(100_001, 1_000).is_err());
        let bucket = Policy::token_bucket(5, 1, 1_000).unwrap();
        let key = case.key("e:range");
        let errors = [
            limiter
                .check_cost(&key, &bucket, (1 << 62) + 1)
                .await
                .unwrap_err(),
            limiter.peek(&key, &bucket, u64::MAX).await.unwrap_err(),
            limiter
                .wait(&key, &bucket, u64::MAX, Duration::from_secs(1))
                .await
                .unwrap_err(),
            limiter
                .check_all(&[(&key, bucket)], u64::MAX)
                .await
                .unwrap_err(),
            limiter
                .acquire(&key, &Concurrency::new(1, 1_000).unwrap(), vec![0; 1_025])
                .await
                .unwrap_err(),
        ];
        for error in errors {
            assert!(error.is_invalid_argument(), "{name}: {error}");
        }
        let zero = RateLimiter::builder(Backend::redis(&case.url()).unwrap())
            .timeout(Duration::ZERO)
            .build()
            .unwrap_err();
        assert!(zero.is_invalid_argument(), "{name}: {zero}");
    })
    .await;
}

/// Issue 11: a server without the module (a restart or a failover to a node without
/// `--loadmodule`) answered `ERR unknown command 'RL.…'`, which every failure policy
/// passed through as an error: the middleware then served every request, fail-closed
/// rules included. Now it is a backend failure: the policy answers, the breaker counts
/// it, and the error names the server.
#[tokio::test]
async fn a_server_without_the_module_gets_the_failure_policy_and_opens_the_breaker() {
    for binary in binaries() {
        let server = ServerBuilder::new(&binary).start();
        let address = format!("127.0.0.1:{}", server.port());
        for protocol in crate::support::PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let builder = |failure| {
                RateLimiter::builder(Backend::redis(&protocol.url(&server)).unwrap())
                    .timeout(Duration::from_secs(5))
                    .on_failure(failure)
                    // Opens at the second failure, for a minute.
                    .circuit_breaker(2, Duration::from_secs(60))
            };
            let bucket = Policy::token_bucket(3, 1, 3_600_000).unwrap();
            let leases = Concurrency::new(1, 1_000).unwrap();

            let closed = builder(FailurePolicy::Closed).build().unwrap();
            for _ in 0..3 {
                let denied = closed.check("k", &bucket).await.unwrap();
                assert_eq!(
                    (denied.allowed, denied.source, denied.retry_after),
                    (false, Source::FailedClosed, Some(Duration::from_secs(60))),
                    "{name}"
                );
            }
            let all = closed.check_all(&[("k", bucket)], 1).await.unwrap();
            assert_eq!(
                (all.allowed, all.source),
                (false, Source::FailedClosed),
                "{name}"
            );
            let lease = closed.acquire("k", &leases, "a").await.unwrap();
            assert_eq!(
                (lease.allowed, lease.source),
                (false, Source::FailedClosed),
                "{name}"
            );
            let waited = closed
                .wait("k", &bucket, 1, Duration::from_millis(10))
                .await
                .unwrap();
            assert_eq!(
                (waited.allowed, waited.source),
                (false, Source::FailedClosed),
                "{name}"
            );

            let open = builder(FailurePolicy::Open).build().unwrap();
            let allowed = open.check("k", &bucket).await.unwrap();
            assert_eq!(
                (allowed.allowed, allowed.source),
                (true, Source::FailedOpen),
                "{name}"
            );
            let peeked = open.peek("k", &bucket, 1).await.unwrap();
            assert_eq!(peeked.source, Source::FailedOpen, "{name}");

            // The fallback enforces the policy in memory: 3, then denied.
            let fallback = builder(FailurePolicy::Fallback).build().unwrap();
            let mut seen = Vec::new();
            for _ in 0..4 {
                let decision = fallback.check("k", &bucket).await.unwrap();
                assert_eq!(decision.source, Source::Fallback, "{name}");
                seen.push(decision.allowed);
            }
            assert_eq!(seen, [true, true, true, false], "{name}");
            let all = fallback.check_all(&[("k2", bucket)], 1).await.unwrap();
            assert_eq!(
                (all.allowed, all.source),
                (true, Source::Fallback),
                "{name}"
            );

            // Error: the error, naming the server; counted by the breaker, which then
            // answers without asking the server.
            let error = builder(FailurePolicy::Error).build().unwrap();
            let first = error.check("k", &bucket).await.unwrap_err();
            assert!(
                first.is_module_not_loaded() && first.is_backend_failure(),
                "{name}: {first}"
            );
            let text = first.to_string();
            assert!(
                text.contains(&format!("the redlimit module is not loaded on {address}"))
                    && text.contains("unknown command 'RL.TOKENBUCKET'")
                    && !text.contains("with args"),
                "{name}: {text}"
            );
            let second = error.peek("k", &bucket, 1).await.unwrap_err();
            assert!(second.is_module_not_loaded(), "{name}: {second}");
            let third = error.check("k", &bucket).await.unwrap_err();
            assert!(
                third.is_circuit_open(),
                "{name}: the breaker opened: {third}"
            );

            // Operations without a failure policy return the error.
            let plain = builder(FailurePolicy::Closed).build().unwrap();
            assert!(
                plain.status("k").await.unwrap_err().is_module_not_loaded(),
                "{name}"
            );
            assert!(
                plain
                    .reset(&["k"])
                    .await
                    .unwrap_err()
                    .is_module_not_loaded(),
                "{name}"
            );
        }
    }
}

/// The module loaded while a limiter runs (`MODULE LOAD`): once the breaker's cool-down
/// has passed, the server decides again, without a restart of the application.
#[tokio::test]
async fn the_module_loaded_later_decides_after_the_cool_down() {
    for binary in binaries() {
        let server = ServerBuilder::new(&binary).start();
        let limiters = crate::support::PROTOCOLS.map(|protocol| {
            let limiter = RateLimiter::builder(Backend::redis(&protocol.url(&server)).unwrap())
                .timeout(Duration::from_secs(5))
                .on_failure(FailurePolicy::Closed)
                .circuit_breaker(1, Duration::from_millis(300))
                .build()
                .unwrap();
            (protocol, limiter)
        });
        let bucket = Policy::token_bucket(3, 1, 3_600_000).unwrap();
        for (protocol, limiter) in &limiters {
            let before = limiter.check(protocol.name(), &bucket).await.unwrap();
            assert_eq!(
                before.source,
                Source::FailedClosed,
                "{} {}",
                binary.name(),
                protocol.name()
            );
        }
        let _: () = redis::cmd("MODULE")
            .arg("LOAD")
            .arg(redlimit_test_support::module_path().to_str().unwrap())
            .query(&mut server.connection())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        for (protocol, limiter) in &limiters {
            let after = limiter.check(protocol.name(), &bucket).await.unwrap();
            assert_eq!(
                (after.allowed, after.source, after.remaining),
                (true, Source::Server, 2),
                "{} {}",
                binary.name(),
                protocol.name()
            );
        }
    }
}

#[tokio::test]
async fn a_refused_permission_is_an_error_under_every_failure_policy() {
    if crate::support::on_scripts() {
        // One command refused, the others allowed: the module's commands only (every
        // script call is an EVALSHA).
        return;
    }
    each_case(|case: Case| async move {
        let con = &mut case.raw();
        let user = format!("app-{}", case.protocol.name());
        let _: () = crate::support::command(&[
            "ACL",
            "SETUSER",
            &user,
            "on",
            ">secret",
            "~*",
            "+@all",
            "-rl.tokenbucket",
        ])
        .query(con)
        .unwrap();
        let url = case
            .url()
            .replace("redis://", &format!("redis://{user}:secret@"));
        let bucket = Policy::token_bucket(5, 1, 1_000).unwrap();
        for failure in POLICIES {
            let limiter = RateLimiter::builder(Backend::redis(&url).unwrap())
                .timeout(Duration::from_secs(5))
                .on_failure(failure)
                .circuit_breaker(1, Duration::from_secs(60))
                .build()
                .unwrap();
            for _ in 0..2 {
                let error = limiter.check("k", &bucket).await.unwrap_err();
                assert_eq!(
                    error.kind(),
                    redlimit::ErrorKind::Server,
                    "{} {failure:?}: {error}",
                    case.name()
                );
                assert!(!error.is_unavailable(), "{}: {error}", case.name());
            }
            let fixed = Policy::fixed(5, 1_000).unwrap();
            let allowed = limiter.check("k2", &fixed).await.unwrap();
            assert_eq!(
                allowed.source,
                Source::Server,
                "{} {failure:?}",
                case.name()
            );
        }
    })
    .await;
}
