//! The circuit breaker while the server stays down: exactly one probe per cool-down
//! (the error policy shows which call probed: its error is not `CircuitOpen`), a failed
//! probe starts another cool-down, concurrent calls to a hung server all return within
//! the timeout, and the client is back on the server by itself.

use crate::fault::{BOUND, COOL_DOWN, Failing, Fault, TIMEOUT, from_server, limiters, sleep_until};
use crate::support::{binaries, figures, info_count, timed};
use redlimit::{FailurePolicy, Policy, RateLimiter, Result, Source};
use std::time::{Duration, Instant};

/// Runs `count` checks at once; in a current-thread runtime the first one polled is
/// the first to ask the breaker.
async fn racing(
    limiter: &RateLimiter,
    count: usize,
) -> Vec<(Result<redlimit::Decision>, Duration)> {
    let policy = Policy::token_bucket(100, 100, 1_000).unwrap();
    let racers: Vec<_> = (0..count)
        .map(|_| {
            let limiter = limiter.clone();
            tokio::spawn(async move { timed(limiter.check("race", &policy)).await })
        })
        .collect();
    let mut answers = Vec::new();
    for racer in racers {
        answers.push(racer.await.unwrap());
    }
    answers
}

fn is_circuit_open(result: &Result<redlimit::Decision>) -> bool {
    matches!(result, Err(error) if error.is_circuit_open())
}

async fn one_probe_per_cool_down(fault: Fault) {
    for binary in binaries() {
        let mut failing = Failing::start(&binary, fault);
        let limiters = limiters(failing.server(), FailurePolicy::Error);
        let names: Vec<String> = limiters
            .iter()
            .map(|(protocol, _)| format!("{} {}", failing.name(), protocol.name()))
            .collect();
        let race = Policy::token_bucket(100, 100, 1_000).unwrap();
        for (_, limiter) in &limiters {
            from_server(limiter, "race", &race).await;
        }
        let con = &mut failing.server().connection();
        let calls = info_count(con, "redlimit_tokenbucket_calls");

        failing.fail();
        let mut cool_down_ends = Vec::new();
        for ((_, limiter), name) in limiters.iter().zip(&names) {
            // Ten calls at once on a server that just failed: each returns within
            // the timeout, each is a failure, and the breaker opens.
            let first = racing(limiter, 10).await;
            let took: Vec<Duration> = first.iter().map(|(_, took)| *took).collect();
            println!(
                "{name}: 10 concurrent calls as it fails: {}",
                figures(&took)
            );
            for (result, took) in &first {
                let error = result.as_ref().unwrap_err();
                assert!(error.is_unavailable(), "{name}: {error}");
                assert!(*took < BOUND, "{name}: {took:?}");
            }
            cool_down_ends.push(Instant::now() + COOL_DOWN);
            assert!(
                racing(limiter, 3)
                    .await
                    .iter()
                    .all(|(r, _)| is_circuit_open(r)),
                "{name}: the breaker is open"
            );
        }

        for round in 1..=2 {
            for (((_, limiter), name), ends) in limiters.iter().zip(&names).zip(&mut cool_down_ends)
            {
                sleep_until(*ends).await;
                let answers = racing(limiter, 6).await;
                *ends = Instant::now() + COOL_DOWN;
                let took: Vec<Duration> = answers.iter().map(|(_, took)| *took).collect();
                println!("{name}: cool-down {round} while down: {}", figures(&took));
                let probes: Vec<_> = answers
                    .iter()
                    .filter(|(r, _)| !is_circuit_open(r))
                    .collect();
                assert_eq!(
                    probes.len(),
                    1,
                    "{name}: one probe per cool-down: {answers:?}"
                );
                let error = probes[0].0.as_ref().unwrap_err();
                assert!(error.is_unavailable(), "{name}: {error}");
                if fault == Fault::Hang {
                    assert!(error.is_timeout(), "{name}: {error}");
                    assert!(
                        probes[0].1 >= TIMEOUT,
                        "{name}: the probe waited the timeout"
                    );
                }
                assert!(took.iter().all(|took| *took < BOUND), "{name}: {took:?}");
                // The failed probe started another cool-down.
                assert!(
                    racing(limiter, 3)
                        .await
                        .iter()
                        .all(|(r, _)| is_circuit_open(r)),
                    "{name}: open again after the failed probe"
                );
            }
        }

        failing.recover();
        let con = &mut failing.server().connection();
        if fault == Fault::Hang {
            // What was sent before the client gave up is executed now, although the
            // caller was answered by the failure policy.
            println!(
                "{}: the resumed server executed {} RL.TOKENBUCKET sent while it hung",
                failing.name(),
                info_count(con, "redlimit_tokenbucket_calls") - calls
            );
        }
        for (((_, limiter), name), ends) in limiters.iter().zip(&names).zip(&cool_down_ends) {
            sleep_until(*ends).await;
            let mut back = None;
            for _ in 0..5 {
                let answers = racing(limiter, 4).await;
                if let Ok(decision) = &answers[0].0 {
                    back = Some(*decision);
                    break;
                }
                println!("{name}: the probe failed on a loaded machine: {answers:?}");
                tokio::time::sleep(COOL_DOWN).await;
            }
            let back = back.expect("the client recovers by itself");
            assert_eq!(back.source, Source::Server, "{name}");
            // Closed again: calls go to the server (one at least: the machine is loaded).
            let after = racing(limiter, 4).await;
            assert!(
                after
                    .iter()
                    .any(|(r, _)| matches!(r, Ok(d) if d.source == Source::Server)),
                "{name}: {after:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_killed_server_is_probed_once_per_cool_down() {
    one_probe_per_cool_down(Fault::Kill).await;
}

#[tokio::test]
async fn a_hung_server_is_probed_once_per_cool_down() {
    one_probe_per_cool_down(Fault::Hang).await;
}
