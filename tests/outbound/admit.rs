//! `RateLimiter::admit` and `Permit` against real servers and in memory: one reservation
//! across limits, settle refunds, cancel-safety, deadlines, windows.

use redlimit::{Admission, Backend, FailurePolicy, Policy, RateLimiter, ServerEngine, Source};
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
        let limiter = RateLimiter::builder(super::client_backend(&server.url()))
            .build()
            .unwrap();
        reserve_settle_and_deny(&limiter, server.binary().name(), Source::Server).await;
    }
    reserve_settle_and_deny(&RateLimiter::memory(), "memory", Source::Memory).await;
}

/// A call of 50 on a roomy bucket and on a fast one (100 tokens a second) just emptied:
/// it waits 500 ms for the fast one.
async fn a_dropped_wait_gives_back_what_no_queue_depends_on(limiter: &RateLimiter, who: &str) {
    let roomy = Policy::token_bucket(1_000, 1_000, 60_000).unwrap();
    let fast = Policy::token_bucket(100, 100, 1_000).unwrap();
    let (r, f) = (format!("{{{who}}}:roomy"), format!("{{{who}}}:fast"));
    let call = [(r.clone(), roomy, 50), (f.clone(), fast, 50)];
    let _ = limiter.check_cost(&f, &fast, 100).await.unwrap();
    let admit = limiter.admit(&call, Duration::from_secs(2));
    assert!(
        tokio::time::timeout(Duration::from_millis(50), admit)
            .await
            .is_err(),
        "{who}: the reservation waits about 500 ms"
    );
    // The dropped future's refund runs on the runtime.
    tokio::time::sleep(Duration::from_millis(30)).await;
    // The roomy bucket is not in debt: its 50 come back less the refill until the act
    // time (a bucket charged nothing might have been full meanwhile: under 8 tokens),
    // and until then it shows the refill the reservation counted as taken (under 8
    // more, refilling). The fast one is in debt (others could be queued behind the
    // reservation): it keeps them.
    let roomy_left = limiter.peek(&r, &roomy, 0).await.unwrap();
    assert!(roomy_left.remaining >= 983, "{who}: {roomy_left:?}");
    let fast_left = limiter.peek(&f, &fast, 0).await.unwrap();
    assert_eq!(fast_left.remaining, 0, "{who}: {fast_left:?}");
    assert!(
        fast_left.reset_after > Duration::from_millis(1_300),
        "{who}: 150 tokens to refill: {fast_left:?}"
    );
    // An unused permit (acted, not in debt) is cancelled: it comes back less the refill
    // until the roomy bucket's pending act time (the dropped reservation's, under 500 ms
    // ahead): a bucket charged 300 less was full until then, losing that refill.
    let permit = limiter
        .admit(&[(r.clone(), roomy, 300)], Duration::ZERO)
        .await
        .unwrap()
        .permit()
        .unwrap();
    let left = limiter.peek(&r, &roomy, 0).await.unwrap().remaining;
    permit.cancel().await.unwrap();
    let after = limiter.peek(&r, &roomy, 0).await.unwrap().remaining;
    // (Under 9 tokens: 500 ms of 1,000 a minute, and the milliseconds since it acted.)
    assert!(
        after >= left + 291 && after < left + 300,
        "{who}: {left} then {after}"
    );
}

#[tokio::test]
async fn dropping_the_waiting_future_gives_back_where_no_queue_depends_on_it() {
    for server in super::servers_for_client() {
        let limiter = RateLimiter::builder(super::client_backend(&server.url()))
            .build()
            .unwrap();
        a_dropped_wait_gives_back_what_no_queue_depends_on(&limiter, server.binary().name()).await;
    }
    a_dropped_wait_gives_back_what_no_queue_depends_on(&RateLimiter::memory(), "memory").await;
}

#[tokio::test]
async fn windows_are_retried_until_admitted_or_out_of_time() {
    for server in super::servers_for_client() {
        let limiter = RateLimiter::builder(super::client_backend(&server.url()))
            .build()
            .unwrap();
        windows_are_retried(&limiter, server.binary().name()).await;
    }
}

/// A sliding window and a bucket: admitted, denied within 100 ms, admitted once the
/// window slid; a throttle is no policy for `admit`.
async fn windows_are_retried(limiter: &RateLimiter, who: &str) {
    let window = Policy::sliding(2, 300).unwrap();
    let bucket = Policy::token_bucket(10, 10, 1_000).unwrap();
    let (s, b) = (format!("{{{who}}}:s"), format!("{{{who}}}:b"));
    let call = [(s.as_str(), window, 2), (b.as_str(), bucket, 1)];
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

/// On servers without the module, through the Lua scripts, whatever
/// `REDLIMIT_TEST_ENGINE` says: `admit` (`RL.ALL ... COSTS ... MAXWAIT`), `settle` and a
/// dropped or cancelled reservation (`RL.ADJUST`, with `SINCE`) answer as on the module.
#[tokio::test]
async fn admit_and_settle_work_on_the_scripts() {
    for binary in super::servers() {
        let server = redlimit_test_support::ServerBuilder::new(&binary).start();
        let backend = Backend::redis(&server.url())
            .unwrap()
            .with_engine(ServerEngine::Scripts);
        let limiter = RateLimiter::builder(backend)
            .on_failure(FailurePolicy::Error)
            .build()
            .unwrap();
        let who = format!("{} scripts", binary.name());
        reserve_settle_and_deny(&limiter, &who, Source::Server).await;
        a_dropped_wait_gives_back_what_no_queue_depends_on(&limiter, &who).await;
        windows_are_retried(&limiter, &who).await;
        // Nothing was written where the module keeps its limiters.
        let con = &mut server.connection();
        let module_key: i64 = redis::cmd("EXISTS")
            .arg(format!("{{{who}}}:tpm"))
            .query(con)
            .unwrap();
        assert_eq!(module_key, 0, "{who}");
    }
}
