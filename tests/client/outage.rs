//! The server is killed or hangs mid-run, under each failure policy: every decision
//! returns within the timeout (asserted < 1 s, printed exactly) with the policy's
//! answer; the breaker opens after the threshold and then answers without asking;
//! while it is open, a restarted or resumed server sees no call; after the cool-down
//! exactly one call probes it, and the client is back on the server by itself.

use crate::fault::{
    BOUND, COOL_DOWN, Failing, Fault, THRESHOLD, assert_failure_answer, from_server, limiters,
    sleep_until, timed_calls,
};
use crate::support::{binaries, figures, info_count, timed};
use redlimit::{FailurePolicy, Policy, RateLimiter, Source};
use std::time::{Duration, Instant};

/// Calls made while the breaker is open, per limiter.
const SKIPPED: usize = 5;
/// Calls racing for the probe after a cool-down.
const RACERS: usize = 6;

async fn outage(fault: Fault, failure: FailurePolicy) {
    for binary in binaries() {
        let mut failing = Failing::start(&binary, fault);
        let limiters = limiters(failing.server(), failure);
        let policy = Policy::sliding(3, 3_600_000).unwrap();
        let name = format!("{} {failure:?}", failing.name());
        for (protocol, limiter) in &limiters {
            from_server(limiter, &format!("{protocol:?}:up"), &policy).await;
        }

        failing.fail();
        let mut opened = Vec::new();
        for (protocol, limiter) in &limiters {
            let label = format!("{name} {}", protocol.name());
            let key = format!("{protocol:?}:k");
            let trying = timed_calls(&format!("{label}: trying the server"), 3, || {
                limiter.check(&key, &policy)
            })
            .await;
            assert_eq!(THRESHOLD, 3);
            opened.push(Instant::now());
            let skipped = timed_calls(&format!("{label}: breaker open"), SKIPPED, || {
                limiter.check(&key, &policy)
            })
            .await;
            for result in &trying {
                assert_failure_answer(result, failure, Some(false), &label);
            }
            for result in &skipped {
                assert_failure_answer(result, failure, Some(true), &label);
            }
            if failure == FailurePolicy::Fallback {
                let allowed = trying
                    .iter()
                    .chain(&skipped)
                    .filter(|result| result.as_ref().unwrap().allowed)
                    .count();
                assert_eq!(allowed, 3, "{label}: the fallback enforces the limit");
            }
        }

        failing.recover();
        let con = &mut failing.server().connection();
        let calls = info_count(con, "redlimit_sliding_calls");
        for ((protocol, limiter), opened) in limiters.iter().zip(&opened) {
            // Still in the cool-down (unless the restart was slow): answered locally.
            if Instant::now() + Duration::from_millis(100) < *opened + COOL_DOWN {
                let result = limiter.check(format!("{protocol:?}:k"), &policy).await;
                assert_failure_answer(&result, failure, Some(true), &name);
            } else {
                println!("{name}: recovery outlasted the cool-down; not checked");
            }
        }
        assert_eq!(
            info_count(con, "redlimit_sliding_calls"),
            calls,
            "{name}: no call while the breaker is open"
        );

        sleep_until(*opened.iter().max().unwrap() + COOL_DOWN).await;
        for (protocol, limiter) in &limiters {
            recovers(
                limiter,
                failure,
                &format!("{name} {}", protocol.name()),
                || info_count(con, "redlimit_sliding_calls"),
            )
            .await;
        }
    }
}

/// After a cool-down, racing calls let exactly one probe through; once a probe
/// succeeds (at the first cool-down, unless the machine is slow), the server answers.
async fn recovers(
    limiter: &RateLimiter,
    failure: FailurePolicy,
    name: &str,
    mut server_calls: impl FnMut() -> u64,
) {
    let policy = Policy::sliding(1_000, 3_600_000).unwrap();
    for cool_down in 1..=5 {
        let before = server_calls();
        let racers: Vec<_> = (0..RACERS)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { timed(limiter.check("recovering", &policy)).await })
            })
            .collect();
        let mut answers = Vec::new();
        for racer in racers {
            answers.push(racer.await.unwrap());
        }
        let took: Vec<Duration> = answers.iter().map(|(_, took)| *took).collect();
        let from_server = answers
            .iter()
            .filter(|(result, _)| matches!(result, Ok(d) if d.source == Source::Server))
            .count();
        println!(
            "{name}: cool-down {cool_down}: {from_server} of {RACERS} from the server, in {}",
            figures(&took)
        );
        assert!(took.iter().all(|took| *took < BOUND), "{name}: {took:?}");
        let probes = server_calls() - before;
        assert!(probes <= 1, "{name}: {probes} calls reached the server");
        for (result, _) in &answers[1..] {
            assert_failure_answer(result, failure, Some(true), name);
        }
        if from_server == 1 {
            let after = limiter.check("recovered", &policy).await.unwrap();
            assert_eq!(after.source, Source::Server, "{name}: breaker closed");
            return;
        }
        assert_failure_answer(&answers[0].0, failure, None, name);
        tokio::time::sleep(COOL_DOWN).await;
    }
    panic!("{name}: no probe succeeded in 5 cool-downs");
}

#[tokio::test]
async fn a_killed_server_fails_open() {
    outage(Fault::Kill, FailurePolicy::Open).await;
}

#[tokio::test]
async fn a_killed_server_fails_closed() {
    outage(Fault::Kill, FailurePolicy::Closed).await;
}

#[tokio::test]
async fn a_killed_server_falls_back_to_memory() {
    outage(Fault::Kill, FailurePolicy::Fallback).await;
}

#[tokio::test]
async fn a_killed_server_returns_unavailable() {
    outage(Fault::Kill, FailurePolicy::Error).await;
}

#[tokio::test]
async fn a_hung_server_fails_open() {
    outage(Fault::Hang, FailurePolicy::Open).await;
}

#[tokio::test]
async fn a_hung_server_fails_closed() {
    outage(Fault::Hang, FailurePolicy::Closed).await;
}

#[tokio::test]
async fn a_hung_server_falls_back_to_memory() {
    outage(Fault::Hang, FailurePolicy::Fallback).await;
}

#[tokio::test]
async fn a_hung_server_returns_unavailable() {
    outage(Fault::Hang, FailurePolicy::Error).await;
}
