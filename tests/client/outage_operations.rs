//! Every operation while the server is down, under each failure policy: decisions
//! (check, peek, wait, check_all, peek_all, acquire) get the policy's answer, the
//! fallback keeps enforcing limits in memory (all or nothing, leases), and the
//! operations no policy answers for (status, reset, and release except under the
//! fallback) return an unavailable error. Everything within the bound.

use crate::fault::{BOUND, COOL_DOWN, FAILURE_POLICIES, Failing, Fault, limiters};
use crate::support::{binaries, figures, timed};
use redlimit::{Concurrency, FailurePolicy, Policy, Source};
use std::time::Duration;

#[tokio::test]
async fn every_operation_answers_while_the_server_is_killed() {
    every_operation_answers(Fault::Kill).await;
}

#[tokio::test]
async fn every_operation_answers_while_the_server_hangs() {
    every_operation_answers(Fault::Hang).await;
}

async fn every_operation_answers(fault: Fault) {
    for binary in binaries() {
        let mut failing = Failing::start(&binary, fault);
        let all: Vec<_> = FAILURE_POLICIES
            .iter()
            .flat_map(|&failure| {
                limiters(failing.server(), failure)
                    .into_iter()
                    .map(move |(protocol, limiter)| (failure, protocol, limiter))
            })
            .collect();
        failing.fail();
        for (failure, protocol, limiter) in &all {
            let name = format!("{} {} {failure:?}", failing.name(), protocol.name());
            let mut took = Vec::new();
            macro_rules! timed {
                ($call:expr) => {{
                    let (result, elapsed) = timed($call).await;
                    assert!(
                        elapsed < BOUND,
                        "{name}: {}: {elapsed:?}",
                        stringify!($call)
                    );
                    took.push(elapsed);
                    result
                }};
            }
            let bucket = Policy::token_bucket(1, 1, 100).unwrap();
            let one = Policy::sliding(1, 3_600_000).unwrap();
            let five = Policy::sliding(5, 3_600_000).unwrap();
            let limits = [("{u}:one", one), ("{u}:five", five)];
            let slot = Concurrency::new(1, 60_000).unwrap();

            let check = timed!(limiter.check("k", &one));
            let peek = timed!(limiter.peek("k", &one, 1));
            let first_wait = timed!(limiter.wait("w", &bucket, 1, Duration::from_secs(1)));
            let second_wait = timed!(limiter.wait("w", &bucket, 1, Duration::from_secs(1)));
            let short_wait = timed!(limiter.wait("k", &one, 1, Duration::from_millis(100)));
            let all_first = timed!(limiter.check_all(&limits, 1));
            let all_second = timed!(limiter.check_all(&limits, 1));
            let peek_all = timed!(limiter.peek_all(&limits, 1));
            let acquired = timed!(limiter.acquire("slot", &slot, "a"));
            let refused = timed!(limiter.acquire("slot", &slot, "b"));
            let released = timed!(limiter.release("slot", "a"));
            let status = timed!(limiter.status("k"));
            let reset = timed!(limiter.reset(&["k"]));
            println!("{name}: {}", figures(&took));

            for error in [status.unwrap_err(), reset.unwrap_err()] {
                assert!(error.is_unavailable(), "{name}: {error}");
            }
            if *failure == FailurePolicy::Error {
                let errors = [
                    check.unwrap_err(),
                    peek.unwrap_err(),
                    first_wait.unwrap_err(),
                    second_wait.unwrap_err(),
                    short_wait.unwrap_err(),
                    all_first.unwrap_err(),
                    all_second.unwrap_err(),
                    peek_all.unwrap_err(),
                    acquired.unwrap_err(),
                    refused.unwrap_err(),
                    released.unwrap_err(),
                ];
                for error in errors {
                    assert!(error.is_unavailable(), "{name}: {error}");
                }
                continue;
            }
            let (check, peek) = (check.unwrap(), peek.unwrap());
            let (first_wait, second_wait) = (first_wait.unwrap(), second_wait.unwrap());
            let short_wait = short_wait.unwrap();
            let (all_first, all_second) = (all_first.unwrap(), all_second.unwrap());
            let (peek_all, acquired, refused) =
                (peek_all.unwrap(), acquired.unwrap(), refused.unwrap());
            match failure {
                FailurePolicy::Open => {
                    for decision in [check, peek, first_wait, second_wait, short_wait] {
                        assert_eq!(
                            (decision.allowed, decision.source),
                            (true, Source::FailedOpen),
                            "{name}: {decision:?}"
                        );
                    }
                    for decision in [acquired, refused] {
                        assert_eq!(decision.source, Source::FailedOpen, "{name}");
                        assert!(decision.allowed, "{name}: {decision:?}");
                    }
                    for decision in [&all_first, &all_second, &peek_all] {
                        assert_eq!(decision.source, Source::FailedOpen, "{name}");
                        assert!(decision.allowed, "{name}: {decision:?}");
                    }
                    assert!(released.unwrap_err().is_unavailable(), "{name}");
                }
                FailurePolicy::Closed => {
                    for decision in [check, peek, first_wait, second_wait, short_wait] {
                        assert_eq!(
                            (decision.allowed, decision.source, decision.retry_after),
                            (false, Source::FailedClosed, Some(COOL_DOWN)),
                            "{name}: {decision:?}"
                        );
                    }
                    for decision in [acquired, refused] {
                        assert_eq!(decision.source, Source::FailedClosed, "{name}");
                        assert!(!decision.allowed, "{name}: {decision:?}");
                    }
                    for decision in [&all_first, &all_second, &peek_all] {
                        assert_eq!(decision.source, Source::FailedClosed, "{name}");
                        assert!(!decision.allowed, "{name}: {decision:?}");
                    }
                    assert!(released.unwrap_err().is_unavailable(), "{name}");
                }
                FailurePolicy::Fallback => {
                    assert!(check.allowed && !peek.allowed, "{name}: {peek:?}");
                    for decision in [check, peek, first_wait, second_wait, short_wait] {
                        assert_eq!(decision.source, Source::Fallback, "{name}");
                    }
                    // The second waiter borrowed the next token and slept for it.
                    assert!(first_wait.allowed && second_wait.allowed, "{name}");
                    assert!(
                        second_wait.retry_after.unwrap() > Duration::ZERO,
                        "{name}: {second_wait:?}"
                    );
                    assert!(!short_wait.allowed, "{name}: one an hour: {short_wait:?}");
                    // All or nothing in memory too: the second round counts nowhere.
                    assert!(all_first.allowed && !all_second.allowed, "{name}");
                    assert_eq!(all_second.source, Source::Fallback, "{name}");
                    assert_eq!(all_second.decisions[1].remaining, 3, "{name}");
                    assert!(!peek_all.allowed, "{name}: {peek_all:?}");
                    assert_eq!(peek_all.decisions[1].remaining, 3, "{name}");
                    assert!(acquired.allowed && !refused.allowed, "{name}");
                    assert_eq!(acquired.source, Source::Fallback, "{name}");
                    assert!(released.unwrap(), "{name}: the fallback's own lease");
                }
                _ => unreachable!(),
            }
        }
    }
}
