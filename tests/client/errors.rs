//! Errors: a key of another type or algorithm is `is_wrong_type()` (whatever the failure
//! policy: the server answered), values out of range are `is_invalid_argument()`, and a
//! server without the module is `is_module_not_loaded()`. None of them opens the breaker.

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

#[tokio::test]
async fn a_server_without_the_module_is_module_not_loaded() {
    for binary in binaries() {
        let server = ServerBuilder::new(&binary).start();
        for protocol in crate::support::PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            for failure in POLICIES {
                let limiter = RateLimiter::builder(Backend::redis(&protocol.url(&server)).unwrap())
                    .timeout(Duration::from_secs(5))
                    .on_failure(failure)
                    .circuit_breaker(1, Duration::from_secs(60))
                    .build()
                    .unwrap();
                let bucket = Policy::token_bucket(5, 1, 1_000).unwrap();
                let leases = Concurrency::new(1, 1_000).unwrap();
                let errors = [
                    limiter.check("k", &bucket).await.unwrap_err(),
                    limiter.check("k", &bucket).await.unwrap_err(),
                    limiter.peek("k", &bucket, 1).await.unwrap_err(),
                    limiter
                        .wait("k", &bucket, 1, Duration::from_secs(1))
                        .await
                        .unwrap_err(),
                    limiter.check_all(&[("k", bucket)], 1).await.unwrap_err(),
                    limiter.acquire("k", &leases, "a").await.unwrap_err(),
                    limiter.release("k", "a").await.unwrap_err(),
                    limiter.status("k").await.unwrap_err(),
                    limiter.reset(&["k"]).await.unwrap_err(),
                ];
                for error in errors {
                    assert!(error.is_module_not_loaded(), "{name} {failure:?}: {error}");
                }
            }
        }
    }
}

#[tokio::test]
async fn a_refused_permission_is_an_error_under_every_failure_policy() {
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
