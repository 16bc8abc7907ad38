//! `reset`: deletes limiter keys (all or none), counts them.

use crate::support::{Case, each_case, exists};
use redlimit::{Concurrency, Policy};

#[tokio::test]
async fn reset_deletes_limiter_keys_and_counts_them() {
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        let name = case.name();
        let (bucket, leases, missing) = (case.key("r:b"), case.key("r:l"), case.key("r:none"));
        let policy = Policy::token_bucket(1, 1, 60_000).unwrap();
        limiter.check(&bucket, &policy).await.unwrap();
        limiter
            .acquire(&leases, &Concurrency::new(1, 60_000).unwrap(), "a")
            .await
            .unwrap();
        let none: [&str; 0] = [];
        assert_eq!(limiter.reset(&none).await.unwrap(), 0, "{name}");

        let string = case.key("r:string");
        let _: () = redis::cmd("SET").arg(&string).arg("x").query(con).unwrap();
        let error = limiter.reset(&[&bucket, &string]).await.unwrap_err();
        assert!(error.is_wrong_type(), "{name}: {error}");
        assert!(exists(con, &bucket), "{name}: nothing deleted");

        let deleted = limiter.reset(&[&bucket, &leases, &missing]).await.unwrap();
        assert_eq!(deleted, 2, "{name}");
        assert_eq!(limiter.status(&bucket).await.unwrap(), None, "{name}");
        assert!(!exists(con, &leases), "{name}");
        let fresh = limiter.check(&bucket, &policy).await.unwrap();
        assert!(fresh.allowed, "{name}: a full bucket again: {fresh:?}");
    })
    .await;
}
