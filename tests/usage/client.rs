//! The client's usage API (`record_usage`, `usage`) on every server, over RESP2 and
//! RESP3, and in memory: the same answers; and a record that cannot reach the server is
//! an error under every failure policy (reporting is not admission).

use redlimit::{
    Backend, FailurePolicy, Policy, RateLimiter, ServerEngine, StoredPolicy, UsageShape,
};
use redlimit_test_support::{ServerBuilder, available_servers, module_path};
use std::time::Duration;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Records and reads on `limiter`. Robust to an hour starting between two calls: the
/// totals and sums hold whichever hour each amount landed in.
async fn records_and_reads(limiter: &RateLimiter, who: &str) {
    let shape = UsageShape::hourly(24).unwrap();
    let key = "usage:{user:42}:openai";
    assert_eq!(
        limiter.record_usage(key, 1_200, &shape).await.unwrap(),
        1_200
    );
    assert_eq!(limiter.record_usage(key, 300, &shape).await.unwrap(), 1_500);
    assert_eq!(limiter.record_usage(key, 0, &shape).await.unwrap(), 1_500);
    let report = limiter.usage(key).await.unwrap();
    assert_eq!(report.len(), 24, "{who}");
    let sum: u64 = report.iter().map(|bucket| bucket.amount).sum();
    assert_eq!(sum, 1_500, "{who}: {report:?}");
    assert!(
        report
            .windows(2)
            .all(|pair| pair[1].start_ms == pair[0].start_ms + 3_600_000),
        "{who}: consecutive hours, oldest first"
    );
    assert_eq!(
        report[0].start_ms % 3_600_000,
        0,
        "{who}: aligned to the epoch"
    );
    assert_eq!(limiter.usage("usage:none").await.unwrap(), [], "{who}");

    let status = limiter.status(key).await.unwrap().unwrap();
    assert_eq!(status.policy, StoredPolicy::Usage(shape), "{who}");
    assert!(status.decision.allowed, "{who}");
    assert_eq!(status.decision.limit, 0, "{who}");

    let minutes = UsageShape::per_minute(60).unwrap();
    let mismatch = limiter.record_usage(key, 1, &minutes).await.unwrap_err();
    assert!(mismatch.is_invalid_argument(), "{who}: {mismatch}");
    assert!(
        mismatch
            .to_string()
            .contains("it records 24 buckets of 3600000 ms, not 60 of 60000 ms"),
        "{who}: {mismatch}"
    );
    let too_much = limiter.record_usage(key, (1 << 62) + 1, &shape).await;
    assert!(too_much.unwrap_err().is_invalid_argument(), "{who}");

    let policy = Policy::fixed(3, 60_000).unwrap();
    assert!(limiter.check("limit:42", &policy).await.unwrap().allowed);
    let wrong = limiter
        .record_usage("limit:42", 1, &shape)
        .await
        .unwrap_err();
    assert!(wrong.is_wrong_type(), "{who}: {wrong}");
    assert!(limiter.usage("limit:42").await.unwrap_err().is_wrong_type());
    let wrong = limiter.check(key, &policy).await.unwrap_err();
    assert!(wrong.is_wrong_type(), "{who}: {wrong}");

    assert_eq!(limiter.reset(&[key, "limit:42"]).await.unwrap(), 2, "{who}");
    assert_eq!(limiter.usage(key).await.unwrap(), [], "{who}");
}

#[test]
fn the_client_records_and_reads_usage_on_every_server_and_in_memory() {
    let runtime = runtime();
    runtime.block_on(records_and_reads(&RateLimiter::memory(), "memory"));
    for binary in available_servers() {
        let server = ServerBuilder::new(&binary).module(module_path()).start();
        for url in [server.url(), format!("{}?protocol=resp3", server.url())] {
            let who = format!("{} {url}", binary.name());
            let limiter = RateLimiter::builder(Backend::redis(&url).unwrap())
                .build()
                .unwrap();
            runtime.block_on(records_and_reads(&limiter, &who));
        }
    }
}

#[test]
fn a_record_that_cannot_reach_the_server_is_an_error_under_every_policy() {
    let runtime = runtime();
    for binary in available_servers() {
        let server = ServerBuilder::new(&binary).module(module_path()).start();
        let url = server.url();
        drop(server.kill());
        let shape = UsageShape::hourly(24).unwrap();
        for policy in [
            FailurePolicy::Fallback,
            FailurePolicy::Open,
            FailurePolicy::Closed,
            FailurePolicy::Error,
        ] {
            let who = format!("{} {policy:?}", binary.name());
            let limiter = RateLimiter::builder(Backend::redis(&url).unwrap())
                .on_failure(policy)
                .timeout(Duration::from_millis(200))
                .build()
                .unwrap();
            runtime.block_on(async {
                let error = limiter.record_usage("u", 5, &shape).await.unwrap_err();
                assert!(error.is_backend_failure(), "{who}: {error}");
                let error = limiter.usage("u").await.unwrap_err();
                assert!(error.is_backend_failure(), "{who}: {error}");
                // Nothing was kept in memory to be reported later as if recorded.
                let local = limiter.with_failure_policy(FailurePolicy::Fallback);
                assert!(local.usage("u").await.is_err(), "{who}");
            });
        }
    }
}

#[test]
fn the_script_engine_keeps_the_same_counters_without_the_module() {
    let runtime = runtime();
    for binary in available_servers() {
        let server = ServerBuilder::new(&binary).start();
        let backend = Backend::redis(&server.url())
            .unwrap()
            .with_engine(ServerEngine::Scripts);
        let limiter = RateLimiter::builder(backend).build().unwrap();
        let who = format!("{} scripts", binary.name());
        runtime.block_on(records_and_reads(&limiter, &who));
    }
}
