//! A connection that died while the limiter was idle (the server restarted, an idle
//! `timeout` or a proxy closed it, `CLIENT KILL`) is made again on the next call: the
//! server is up, so the next decision comes from the server, not the failure policy.

use crate::fault::{Failing, Fault, builder};
use crate::support::{PROTOCOLS, binaries, info_count};
use redlimit::{FailurePolicy, Policy, Source};
use std::time::Duration;

#[tokio::test]
async fn a_connection_closed_by_the_server_is_made_again_at_once() {
    for binary in binaries() {
        let failing = Failing::start(&binary, Fault::Kill);
        let con = &mut failing.server().connection();
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let limiter = builder(&protocol.url(failing.server()), FailurePolicy::Error)
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let policy = Policy::fixed(10, 3_600_000).unwrap();
            assert!(limiter.check("k", &policy).await.unwrap().allowed);
            for pause in [Duration::ZERO, Duration::from_millis(50)] {
                let killed: i64 = redis::cmd("CLIENT")
                    .arg(&["KILL", "TYPE", "normal"])
                    .query(con)
                    .unwrap();
                assert_eq!(killed, 1, "{name}: the limiter's connection");
                tokio::time::sleep(pause).await;
                let calls = info_count(con, "redlimit_fixed_calls");
                let decision = limiter.check("k", &policy).await;
                let decision = decision.unwrap_or_else(|e| panic!("{name} after {pause:?}: {e}"));
                assert_eq!(decision.source, Source::Server, "{name}");
                assert_eq!(
                    info_count(con, "redlimit_fixed_calls") - calls,
                    1,
                    "{name}: counted once"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_server_restarted_while_the_limiter_was_idle_answers_the_next_call() {
    for binary in binaries() {
        let mut failing = Failing::start(&binary, Fault::Kill);
        let limiters: Vec<_> = PROTOCOLS
            .iter()
            .map(|protocol| {
                let url = protocol.url(failing.server());
                (
                    protocol.name(),
                    builder(&url, FailurePolicy::Error)
                        .timeout(Duration::from_secs(2))
                        .build()
                        .unwrap(),
                )
            })
            .collect();
        let policy = Policy::fixed(10, 3_600_000).unwrap();
        for (_, limiter) in &limiters {
            assert!(limiter.check("k", &policy).await.unwrap().allowed);
        }
        failing.fail();
        failing.recover();
        for (protocol, limiter) in &limiters {
            let decision = limiter.check("k", &policy).await;
            let decision = decision.unwrap_or_else(|e| panic!("{} {protocol}: {e}", binary.name()));
            assert_eq!(
                decision.source,
                Source::Server,
                "{} {protocol}",
                binary.name()
            );
        }
    }
}

#[tokio::test]
async fn a_given_connection_is_never_remade_but_never_panics() {
    let Some(binary) = binaries().pop() else {
        return;
    };
    let mut failing = Failing::start(&binary, Fault::Kill);
    let connection = failing
        .server()
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let limiter = redlimit::RateLimiter::builder(crate::support::with_engine(
        redlimit::Backend::connection(connection),
    ))
    .timeout(Duration::from_secs(2))
    .on_failure(FailurePolicy::Error)
    .circuit_breaker(100, Duration::from_millis(1))
    .build()
    .unwrap();
    let policy = Policy::fixed(10, 3_600_000).unwrap();
    let up = limiter.check("k", &policy).await.unwrap();
    assert_eq!(up.source, Source::Server);
    failing.fail();
    failing.recover();
    // As documented: the given connection is gone for good, and says so.
    for _ in 0..3 {
        let error = limiter.check("k", &policy).await.unwrap_err();
        assert!(error.is_unavailable(), "{error}");
    }
}
