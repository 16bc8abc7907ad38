//! Extreme settings never panic: a cool-down or a timeout of `Duration::MAX`, a
//! breaker threshold of 0, against a server that is down.

use crate::fault::{Failing, Fault};
use crate::support::binaries;
use redlimit::{Backend, FailurePolicy, Policy, RateLimiter, Source};
use std::time::Duration;

#[tokio::test]
async fn extreme_settings_answer_without_panicking() {
    let Some(binary) = binaries().pop() else {
        return;
    };
    let mut failing = Failing::start(&binary, Fault::Kill);
    let url = failing.server().url();
    failing.fail();
    let fixed = Policy::fixed(1, 1_000).unwrap();
    let bucket = Policy::token_bucket(1, 1, 1_000).unwrap();
    for (threshold, cool_down, timeout) in [
        (1, Duration::MAX, Duration::from_millis(50)),
        (0, Duration::ZERO, Duration::from_millis(50)),
        (3, Duration::from_secs(1), Duration::MAX),
    ] {
        for failure in [FailurePolicy::Closed, FailurePolicy::Open] {
            let name = format!("{threshold} {cool_down:?} {timeout:?} {failure:?}");
            let limiter = RateLimiter::builder(Backend::redis(&url).unwrap())
                .circuit_breaker(threshold, cool_down)
                .timeout(timeout)
                .on_failure(failure)
                .build()
                .unwrap();
            for _ in 0..3 {
                let check = limiter.check("k", &fixed).await.unwrap();
                let waited = limiter
                    .wait("k", &fixed, 1, Duration::from_millis(10))
                    .await
                    .unwrap();
                let reserved = limiter
                    .wait("b", &bucket, 1, Duration::from_millis(10))
                    .await
                    .unwrap();
                for decision in [check, waited, reserved] {
                    let expected = match failure {
                        FailurePolicy::Open => Source::FailedOpen,
                        _ => Source::FailedClosed,
                    };
                    assert_eq!(decision.source, expected, "{name}: {decision:?}");
                }
            }
        }
    }
}
