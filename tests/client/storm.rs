//! Many tasks deciding at once on a multi-threaded runtime while the server is killed
//! and restarted, or hangs and resumes: no task panics, every decision returns within
//! the bound, and the traffic is back on the server by itself.

use crate::fault::{BOUND, COOL_DOWN, Failing, Fault, builder};
use crate::support::{binaries, figures};
use redlimit::{FailurePolicy, Policy, Source};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const TASKS: usize = 32;

/// On one server per fault (the client's concurrency is the point, not the server):
/// the oldest Redis is killed, the newest Valkey hangs.
async fn storm(fault: Fault) {
    let found = binaries();
    let binary = match fault {
        Fault::Kill => found.first(),
        Fault::Hang => found.last(),
    };
    if let Some(binary) = binary {
        let mut failing = Failing::start(binary, fault);
        let url = format!("{}?protocol=resp3", failing.server().url());
        let limiter = builder(&url, FailurePolicy::Fallback)
            .deny_cache(1_000)
            .build()
            .unwrap();
        let policy = Policy::token_bucket(20, 20, 1_000).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (limiter, stop) = (limiter.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut seen: Vec<(Instant, Source, Duration)> = Vec::new();
                    let key = format!("storm:{}", task % 8);
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let decision = limiter.check(&key, &policy).await.unwrap();
                        seen.push((started, decision.source, started.elapsed()));
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    seen
                })
            })
            .collect();

        tokio::time::sleep(Duration::from_millis(300)).await;
        let failed_at = Instant::now();
        tokio::task::block_in_place(|| failing.fail());
        tokio::time::sleep(Duration::from_millis(400)).await;
        tokio::task::block_in_place(|| failing.recover());
        let recovered_at = Instant::now();
        // Back on the server after a cool-down (or a few, if probes miss on a loaded
        // machine); then a while longer to see the traffic there.
        let back_at = loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let watch = limiter.check_cost("storm:watch", &policy, 0).await.unwrap();
            if watch.source == Source::Server {
                break Instant::now();
            }
            assert!(
                recovered_at.elapsed() < 10 * COOL_DOWN,
                "{}: never back on the server",
                failing.name()
            );
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);

        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("no task panics"));
        }
        let mut by_source: HashMap<&str, usize> = HashMap::new();
        for (_, source, _) in &all {
            *by_source.entry(source.as_str()).or_default() += 1;
        }
        let slowest = all.iter().map(|(_, _, took)| *took).max().unwrap();
        let during: Vec<Duration> = all
            .iter()
            .filter(|(at, _, _)| (failed_at..recovered_at).contains(at))
            .map(|(_, _, took)| *took)
            .collect();
        let worst_during = during.iter().max().copied().unwrap_or_default();
        println!(
            "{} storm: {} decisions by {TASKS} tasks, {by_source:?}; slowest {}, slowest \
             while down {}",
            failing.name(),
            all.len(),
            figures(&[slowest]),
            figures(&[worst_during])
        );
        assert!(slowest < BOUND, "{}: {slowest:?}", failing.name());
        assert!(
            by_source.get("fallback").copied().unwrap_or(0) > 0,
            "{}: the fallback answered while down",
            failing.name()
        );
        println!(
            "{}: back on the server {} after it recovered",
            failing.name(),
            figures(&[back_at - recovered_at])
        );
        let since_back = all.iter().filter(|(at, _, _)| *at > back_at);
        // The server decides again (or its cached denials answer for it). Not all:
        // on a loaded machine a stall of the shared connection times out a burst of
        // calls, which may open the breaker again for a cool-down.
        let (from_server, total) = since_back.fold((0, 0), |(server, total), (_, source, _)| {
            let answered = matches!(source, Source::Server | Source::LocalCache);
            (server + usize::from(answered), total + 1)
        });
        println!(
            "{}: then {from_server} of {total} decisions by the server",
            failing.name()
        );
        assert!(from_server > 0, "{}: back on the server", failing.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_decisions_survives_a_killed_server() {
    storm(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_decisions_survives_a_hung_server() {
    storm(Fault::Hang).await;
}
