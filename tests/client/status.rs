//! `status`: the stored policy and a cost-1 peek, for every algorithm; `None` when the
//! key is missing.

use crate::support::{Case, assert_like_raw, each_case, raw_decide};
use redlimit::{Concurrency, Policy, Source, StoredPolicy};

#[tokio::test]
async fn status_reports_every_algorithm() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    each_case(|case: Case| async move {
        let limiter = case.limiter();
        let con = &mut case.raw();
        let rates = [
            ("bucket", Policy::token_bucket(5, 1, 60_000).unwrap()),
            ("throttle", Policy::throttle(4, 10, 60).unwrap()),
            ("fixed", Policy::fixed(5, 3_600_000).unwrap()),
            ("sliding", Policy::sliding(5, 60_000).unwrap()),
            ("approx", Policy::sliding_approx(5, 60_000).unwrap()),
        ];
        for (name, policy) in rates {
            let key = case.key(&format!("status:{name}"));
            let context = format!("{} {name}", case.name());
            assert_eq!(limiter.status(&key).await.unwrap(), None, "{context}");
            limiter.check_cost(&key, &policy, 2).await.unwrap();
            let status = limiter.status(&key).await.unwrap().expect("a stored key");
            assert_eq!(status.policy, StoredPolicy::Rate(policy), "{context}");
            assert_eq!(status.policy.algorithm(), policy.algorithm(), "{context}");
            let decision = status.decision;
            assert_eq!(decision.source, Source::Server, "{context}");
            assert_eq!(
                (decision.allowed, decision.limit, decision.remaining),
                (true, 5, 2),
                "{context}: what a cost-1 request would leave: {decision:?}"
            );
            if !matches!(policy, Policy::Throttle(_)) {
                let peek = raw_decide(con, &key, &policy, 1, true);
                assert_like_raw(&decision, peek, 250, &context);
            }
        }
        let key = case.key("status:leases");
        let three = Concurrency::new(3, 30_000).unwrap();
        limiter.acquire(&key, &three, "a").await.unwrap();
        let status = limiter.status(&key).await.unwrap().expect("a stored key");
        assert_eq!(
            status.policy,
            StoredPolicy::Concurrency(three),
            "{}",
            case.name()
        );
        assert_eq!(
            (status.decision.allowed, status.decision.remaining),
            (true, 1),
            "{}: a new holder would leave one slot",
            case.name()
        );
        let _: () = redis::cmd("SET")
            .arg(case.key("status:string"))
            .arg("x")
            .query(con)
            .unwrap();
        let error = limiter.status(case.key("status:string")).await.unwrap_err();
        assert!(error.is_wrong_type(), "{}: {error}", case.name());
    })
    .await;
}
