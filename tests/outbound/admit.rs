//! `RateLimiter::admit` and `Permit` against real servers and in memory: one reservation
//! across limits, settle refunds, cancel-safety, deadlines, windows.

use redlimit::{Admission, Backend, Policy, RateLimiter, Source};
use std::time::{Duration, Instant};

fn policies() -> (Policy, Policy) {
    (
        Policy::token_bucket(3, 3, 60_000).unwrap(),
        Policy::token_bucket(1_000, 1_000, 60_000).unwrap(),
    )
}

/// `admit` then `settle` on `limiter`, keys under `tag`.
async fn reserve_settle_and_deny(limiter: &RateLimiter, tag: &str, source: Source) {
    let (rpm, tpm) = policies();
    let (r, t) = (format!("{{{tag}}}:rpm"), format!("{{{tag}}}:tpm"));
    let call = |tokens| [(r.clone(), rpm, 1), (t.clone(), tpm, tokens)];
    let permit = limiter
        .admit(&call(900), Duration::ZERO)
        .await
        .unwrap()
        .permit()
        .expect("900 of 1,000 tokens are there");
    assert_eq!(permit.source(), source, "{tag}");
    assert_eq!(permit.waited(), Duration::ZERO, "{tag}");
    permit.settle(&[1, 300]).await.unwrap();
    // 600 back, less the refill of the milliseconds since the call (under a token).
    let left = limiter.peek(&t, &tpm, 0).await.unwrap().remaining;
    assert!((699..=700).contains(&left), "{tag}: {left}");
    // 900 again: 200 short, back in 12 s; with no wait allowed nothing is counted.
    let Admission::Denied(denied) = limiter.admit(&call(900), Duration::ZERO).await.unwrap() else {
        panic!("{tag}: 200 tokens short");
    };
    let retry = denied.retry_after().unwrap();
    assert!(
        retry <= Duration::from_millis(12_010) && retry > Duration::from_millis(11_500),
        "{tag}: {retry:?}"
    );
    assert_eq!(
        limiter.peek(&r, &rpm, 0).await.unwrap().remaining,
        2,
        "{tag}"
    );
    // A cost above the capacity never fits.
    let Admission::Denied(never) = limiter.admit(&call(1_001), Duration::MAX).await.unwrap() else {
        panic!("{tag}: above the capacity");
    };
    assert_eq!(never.retry_after(), None, "{tag}");
}

#[tokio::test]
async fn admit_reserves_across_limits_and_settle_gives_back() {
    for server in super::servers_for_client() {
        let limiter = RateLimiter::builder(Backend::redis(&server.url()).unwrap())
            .build()
            .unwrap();
        reserve_settle_and_deny(&limiter, server.binary().name(), Source::Server).await;
    }
    reserve_settle_and_deny(&RateLimiter::memory(), "memory", Source::Memory).await;
}

/// A bucket of 100 tokens a second, emptied: a call of 50 waits 500 ms.
async fn a_dropped_wait_gives_its_reservation_back(limiter: &RateLimiter, who: &str) {
    let fast = Policy::token_bucket(100, 100, 1_000).unwrap();
    let key = format!("{who}:fast");
    let call = [(key.clone(), fast, 50)];
    let _ = limiter.check_cost(&key, &fast, 100).await.unwrap();
    let admit = limiter.admit(&call, Duration::from_secs(2));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), admit)
            .await
            .is_err(),
        "{who}: the reservation waits about 500 ms"
    );
    // The dropped future's refund runs on the runtime.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = Instant::now();
    let permit = limiter
        .admit(&call, Duration::from_secs(2))
        .await
        .unwrap()
        .permit()
        .unwrap();
    // Without the refund this one would have waited about 950 ms.
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(700) && permit.waited() < Duration::from_millis(500),
        "{who}: waited {waited:?}"
    );
    // An unused permit is cancelled: everything comes back.
    let left = limiter.peek(&key, &fast, 0).await.unwrap().remaining;
    permit.cancel().await.unwrap();
    let after = limiter.peek(&key, &fast, 0).await.unwrap().remaining;
    // (Less the refill of the milliseconds since it acted: under a token or two.)
    assert!(after >= left + 48, "{who}: {left} then {after}");
}

#[tokio::test]
async fn dropping_the_waiting_future_gives_the_reservation_back() {
    for server in super::servers_for_client() {
        let limiter = RateLimiter::builder(Backend::redis(&server.url()).unwrap())
            .build()
            .unwrap();
        a_dropped_wait_gives_its_reservation_back(&limiter, server.binary().name()).await;
    }
    a_dropped_wait_gives_its_reservation_back(&RateLimiter::memory(), "memory").await;
}

#[tokio::test]
async fn windows_are_retried_until_admitted_or_out_of_time() {
    for server in super::servers_for_client() {
        let who = server.binary().name();
        let limiter = RateLimiter::builder(Backend::redis(&server.url()).unwrap())
            .build()
            .unwrap();
        let window = Policy::sliding(2, 300).unwrap();
        let bucket = Policy::token_bucket(10, 10, 1_000).unwrap();
        let call = [("{w}:s", window, 2), ("{w}:b", bucket, 1)];
        assert!(matches!(
            limiter.admit(&call, Duration::ZERO).await.unwrap(),
            Admission::Admitted(_)
        ));
        // The window is full for 300 ms: too long for 100 ms, fine for a second.
        assert!(matches!(
            limiter
                .admit(&call, Duration::from_millis(100))
                .await
                .unwrap(),
            Admission::Denied(_)
        ));
        let started = Instant::now();
        let permit = limiter
            .admit(&call, Duration::from_secs(1))
            .await
            .unwrap()
            .permit()
            .unwrap_or_else(|| panic!("{who}: admitted once the window slid"));
        assert!(started.elapsed() >= Duration::from_millis(150), "{who}");
        permit.settle(&[1, 1]).await.unwrap();
        let throttle = Policy::throttle(1, 1, 1).unwrap();
        let error = limiter
            .admit(&[("t", throttle, 1)], Duration::ZERO)
            .await
            .unwrap_err();
        assert!(error.is_invalid_argument(), "{who}: {error}");
    }
}
