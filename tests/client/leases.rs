//! `acquire` / `renew` / `release`: at most N leases, renewals, releases.

use crate::support::{Case, each_case, exists, raw_decision};
use redlimit::{Concurrency, Source};
use std::time::Duration;

#[tokio::test]
async fn leases_are_taken_renewed_and_released() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        let two = Concurrency::new(2, 30_000).unwrap();
        let key = case.key("slots");
        let name = case.name();

        let first = limiter.acquire(&key, &two, "job-1").await.unwrap();
        assert_eq!(
            (first.allowed, first.limit, first.remaining, first.source),
            (true, 2, 1, Source::Server),
            "{name}: {first:?}"
        );
        assert!(limiter.acquire(&key, &two, "job-2").await.unwrap().allowed);
        let third = limiter.acquire(&key, &two, "job-3").await.unwrap();
        assert!(!third.allowed, "{name}: {third:?}");
        let wait = third.retry_after.unwrap();
        // Up to 1 ms over: a lease ends at the next whole millisecond after its full
        // length (rounded in the safe direction, issue 11).
        assert!(
            wait > Duration::from_secs(29) && wait <= Duration::from_millis(30_001),
            "{name}: job-1's lease ends then: {third:?}"
        );
        // The raw command agrees (nothing was taken by the denial).
        let raw = raw_decision(con, &["RL.ACQUIRE", &key, "2", "30000", "job-3"]);
        assert_eq!(raw[..3], [0, 2, 0], "{name}");

        let renewed = limiter.renew(&key, &two, "job-1").await.unwrap();
        assert_eq!(
            (renewed.allowed, renewed.remaining),
            (true, 0),
            "{name}: a renewal takes no new slot: {renewed:?}"
        );

        assert!(limiter.release(&key, "job-1").await.unwrap(), "{name}");
        assert!(
            !limiter.release(&key, "job-1").await.unwrap(),
            "{name}: released twice"
        );
        assert!(
            !limiter.release(&key, "never-held").await.unwrap(),
            "{name}"
        );
        assert!(limiter.acquire(&key, &two, "job-3").await.unwrap().allowed);
        assert!(limiter.release(&key, "job-2").await.unwrap());
        assert!(limiter.release(&key, "job-3").await.unwrap());
        assert!(
            !exists(con, &key),
            "{name}: the last release deletes the key"
        );
        assert!(
            !limiter
                .release(&case.key("no-such-key"), "x")
                .await
                .unwrap(),
            "{name}"
        );
    })
    .await;
}

#[tokio::test]
async fn lease_ids_are_bytes_and_bounded() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let one = Concurrency::new(1, 10_000).unwrap();
        let key = case.key("bytes");
        let id = [0u8, 0xff, b'\n', 0x80];
        assert!(limiter.acquire(&key, &one, id).await.unwrap().allowed);
        assert!(!limiter.acquire(&key, &one, [0u8]).await.unwrap().allowed);
        assert!(limiter.release(&key, id).await.unwrap(), "{}", case.name());
        let long = vec![b'x'; 1_025];
        let error = limiter.acquire(&key, &one, &long).await.unwrap_err();
        assert!(error.is_invalid_argument(), "{}: {error}", case.name());
    })
    .await;
}
