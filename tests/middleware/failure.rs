//! The server killed under load, with a rule per failure policy: every request is still
//! answered, within the timeout, by its rule's policy (open: served, closed: 503 of type temporary-reduced-capacity,
//! fallback: decided in memory), never by an error; the backend-error counters grow.
//! On every server found.

use crate::support::{app, get, start};
use axum::http::StatusCode;
use redlimit::http::{Config, RateLimitLayer};
use redlimit::{Backend, FailurePolicy, RateLimiter};
use redlimit_test_support::available_servers;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Room for a loaded machine: a server that is up should answer within it.
const TIMEOUT: Duration = Duration::from_millis(500);

/// Every answer comes within this: the timeout, and a generous margin (a loaded 2-core
/// machine has stalled a task for 3.5 s). Typical answers are checked against the
/// timeout itself, by their median.
const ANSWER_BOUND: Duration = Duration::from_millis(500 + 7500);

const RULES: &str = r#"
    # The rules without their own policy.
    failure = "closed"

    [[rules]]
    name = "open"
    path = "/open"
    failure = "open"
    limits = [{ name = "big", algorithm = "token_bucket", capacity = 1000000, refill_tokens = 1000, refill_ms = 1 }]

    [[rules]]
    name = "closed"
    path = "/closed"
    failure = "closed"
    limits = [{ name = "big", algorithm = "token_bucket", capacity = 1000000, refill_tokens = 1000, refill_ms = 1 }]

    [[rules]]
    name = "fallback"
    path = "/fallback"
    failure = "fallback"
    limits = [{ name = "big", algorithm = "token_bucket", capacity = 1000000, refill_tokens = 1000, refill_ms = 1 }]

    [[rules]]
    name = "inherits"
    path = "/inherits"
    limits = [{ name = "big", algorithm = "token_bucket", capacity = 1000000, refill_tokens = 1000, refill_ms = 1 }]

    [[rules]]
    name = "all"
    path = "/all"
    failure = "fallback"
    limits = [
      { name = "big", algorithm = "token_bucket", capacity = 1000000, refill_tokens = 1000, refill_ms = 1 },
      { name = "window", algorithm = "sliding_approx", limit = 1000000, window_ms = 1000 },
    ]

    [[rules]]
    name = "small"
    path = "/small"
    failure = "fallback"
    limits = [{ name = "five", algorithm = "token_bucket", capacity = 5, refill_tokens = 1, refill_ms = 3600000 }]
"#;

/// The rules under load, and what each answers once the server is gone.
const RULE_NAMES: [&str; 5] = ["open", "closed", "fallback", "inherits", "all"];

fn during_outage(rule: &str) -> StatusCode {
    match rule {
        "closed" | "inherits" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    }
}

/// One answered request.
struct Answer {
    rule: usize,
    started: Instant,
    latency: Duration,
    status: StatusCode,
    retry_after: Option<String>,
}

/// How the server fails under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outage {
    /// SIGKILL: connections refused at once.
    Kill,
    /// SIGSTOP: connections accepted, nothing answered; every call waits for the timeout
    /// until the circuit breaker opens. Resumed at the end: the server decides again.
    Hang,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_gets_each_rules_failure_policy_within_the_timeout() {
    for binary in available_servers() {
        under_load(&binary, Outage::Kill).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_gets_each_rules_failure_policy_within_the_timeout() {
    for binary in available_servers() {
        under_load(&binary, Outage::Hang).await;
    }
}

async fn under_load(binary: &redlimit_test_support::ServerBinary, outage: Outage) {
    println!("== {} {outage:?}", binary.name());
    let server = start(binary);
    // The limiter's own policy is Error: each rule's policy is the one answering.
    let limiter = RateLimiter::builder(crate::support::with_engine(
        Backend::redis(&server.url()).unwrap(),
    ))
    .timeout(TIMEOUT)
    .on_failure(FailurePolicy::Error)
    .build()
    .unwrap();
    let layer = RateLimitLayer::from_config(limiter, &Config::from_toml(RULES).unwrap()).unwrap();
    let metrics = layer.metrics();
    let app = app(layer);

    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..6_usize {
        let (app, stop) = (app.clone(), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let rule = n % RULE_NAMES.len();
                let peer = format!("198.51.100.{}", n % 50);
                let started = Instant::now();
                let reply = get(&format!("/{}", RULE_NAMES[rule]))
                    .from(&peer)
                    .send(&app)
                    .await;
                answers.push(Answer {
                    rule,
                    started,
                    latency: started.elapsed(),
                    status: reply.status,
                    retry_after: reply.header("retry-after").map(str::to_owned),
                });
                n += 1;
                // Answers without the server are immediate: let the other tasks
                // (and the test's clock) run, as a server's connections would.
                tokio::task::yield_now().await;
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let outage_started = Instant::now();
    let server = tokio::task::spawn_blocking(move || match outage {
        Outage::Kill => {
            server.kill();
            None
        }
        Outage::Hang => {
            server.pause();
            Some(server)
        }
    })
    .await
    .unwrap();
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for worker in workers {
        answers.extend(worker.await.unwrap());
    }

    for (rule, name) in RULE_NAMES.iter().enumerate() {
        let mine: Vec<&Answer> = answers.iter().filter(|a| a.rule == rule).collect();
        // Answered before the outage began; started after it was complete.
        let before: Vec<&&Answer> = mine
            .iter()
            .filter(|a| a.started + a.latency < outage_started)
            .collect();
        let after: Vec<&&Answer> = mine.iter().filter(|a| a.started > outage).collect();
        println!(
            "{name:>8}: {} before the outage, latency {}; {} after, latency {}",
            before.len(),
            figures(before.iter().map(|a| a.latency)),
            after.len(),
            figures(after.iter().map(|a| a.latency)),
        );
        assert!(!before.is_empty() && !after.is_empty(), "{name}: no load");
        for answer in &mine {
            assert!(
                matches!(answer.status.as_u16(), 200 | 503),
                "{name}: {}",
                answer.status
            );
            assert!(
                answer.latency <= ANSWER_BOUND,
                "{name}: answered in {:?}",
                answer.latency
            );
        }
        // While the server is up it decides (200: the limits are huge). A call that
        // outlives the timeout on a loaded machine is answered by the policy too, so a
        // closed rule may refuse a few: most must be served.
        let served = before.iter().filter(|a| a.status == StatusCode::OK).count();
        if during_outage(name) == StatusCode::OK {
            assert_eq!(served, before.len(), "{name}");
        } else {
            println!(
                "{name:>8}: {} refused before the outage",
                before.len() - served
            );
            assert!(
                served * 10 >= before.len() * 9,
                "{name}: {served} of {}",
                before.len()
            );
        }
        let mut after_latencies: Vec<Duration> = after.iter().map(|a| a.latency).collect();
        after_latencies.sort();
        let median = after_latencies[after_latencies.len() / 2];
        assert!(
            median <= TIMEOUT,
            "{name}: median {median:?} after the outage"
        );
        let expected = during_outage(name);
        for answer in &after {
            assert_eq!(answer.status, expected, "{name} after the outage");
            if expected == StatusCode::SERVICE_UNAVAILABLE {
                // Retry after the circuit breaker's cool-down (1 s).
                assert_eq!(answer.retry_after.as_deref(), Some("1"));
            }
        }
        let errors = crate::support::counter(&metrics, "backend_errors", name);
        println!("{name:>8}: backend_errors {errors}");
        assert!(errors >= 1, "{name}: backend errors counted");
    }

    // The fallback decides in memory with the rule's own limits: 5 here.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let reply = get("/small").from("203.0.113.5").send(&app).await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);

    if let Some(server) = server {
        // Back: once the breaker's cool-down has passed, the server decides again.
        server.resume();
        let resumed = Instant::now();
        let deadline = resumed + Duration::from_secs(10);
        loop {
            let reply = get("/closed").from("203.0.113.6").send(&app).await;
            if reply.status == StatusCode::OK {
                assert!(reply.header("ratelimit").is_some(), "{reply:?}");
                break;
            }
            assert!(Instant::now() < deadline, "the server never decided again");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "decided by the server again {:?} after the resume",
            resumed.elapsed()
        );
    }
}

/// `p50 p99 max` of `latencies`, in milliseconds.
fn figures(latencies: impl Iterator<Item = Duration>) -> String {
    let mut sorted: Vec<Duration> = latencies.collect();
    if sorted.is_empty() {
        return "-".to_owned();
    }
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1_000.0;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(at(1.0))
    )
}

/// Rules of every failure policy for a server without the module.
const MISSING_RULES: &str = r#"
    [[rules]]
    name = "login"
    path = "/login"
    failure = "closed"
    limits = [{ name = "per-minute", algorithm = "sliding", limit = 5, window_ms = 60000 }]

    [[rules]]
    name = "both"
    path = "/both"
    failure = "closed"
    limits = [
      { name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 1000 },
      { name = "hour", algorithm = "fixed", limit = 100, window_ms = 3600000 },
    ]

    [[rules]]
    name = "open"
    path = "/open"
    failure = "open"
    limits = [{ name = "big", algorithm = "token_bucket", capacity = 1000, refill_tokens = 1, refill_ms = 1000 }]

    [[rules]]
    name = "small"
    path = "/small"
    failure = "fallback"
    limits = [{ name = "three", algorithm = "token_bucket", capacity = 3, refill_tokens = 1, refill_ms = 3600000 }]
"#;

/// Issue 11: a server without the module (a restart or failover to a node without
/// `--loadmodule`) made a `failure = "closed"` login rule serve every request (the
/// handler answered), other rules serve unlimited, with one warning per request and the
/// breaker never opening. Now each rule's failure policy answers (closed: 503 without
/// `violated-policies`; fallback: the limits in memory; open: served), over RESP2 and
/// RESP3; the trouble is logged once, not per request, even with a breaker probing the
/// server on almost every request; and once the module is loaded the server decides
/// again, logged once.
#[tokio::test]
async fn a_server_without_the_module_gets_each_rules_failure_policy_and_one_log_line() {
    for binary in available_servers() {
        let server = redlimit_test_support::ServerBuilder::new(&binary).start();
        for resp3 in [false, true] {
            let name = format!("{} resp3={resp3}", binary.name());
            let url = if resp3 {
                format!("{}?protocol=resp3", server.url())
            } else {
                server.url()
            };
            let (logs, _guard) = crate::support::capture_logs();
            // A cool-down of 1 ms: nearly every request probes the server again.
            let limiter = RateLimiter::builder(Backend::redis(&url).unwrap())
                .timeout(TIMEOUT)
                .circuit_breaker(3, Duration::from_millis(1))
                .build()
                .unwrap();
            let config = Config::from_toml(MISSING_RULES).unwrap();
            let layer = RateLimitLayer::from_config(limiter, &config).unwrap();
            let metrics = layer.metrics();
            let app = app(layer);
            let peer = if resp3 {
                "203.0.113.31"
            } else {
                "203.0.113.30"
            };

            for path in ["/login", "/both"] {
                for _ in 0..8 {
                    let reply = get(path).from(peer).send(&app).await;
                    assert_eq!(
                        reply.status,
                        StatusCode::SERVICE_UNAVAILABLE,
                        "{name} {path}: {reply:?}"
                    );
                    assert_eq!(reply.header("retry-after"), Some("1"), "{name} {path}");
                    assert!(
                        reply.header("ratelimit").is_none(),
                        "{name} {path}: no numbers"
                    );
                    let body = reply.json();
                    assert_eq!(
                        body["type"],
                        redlimit::http::TEMPORARY_REDUCED_CAPACITY,
                        "{name}"
                    );
                    assert_eq!(body["status"], 503, "{name}");
                    // Nothing was violated: the limits could not be checked.
                    assert!(
                        body.get("violated-policies").is_none(),
                        "{name} {path}: {body}"
                    );
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            for _ in 0..5 {
                let reply = get("/open").from(peer).send(&app).await;
                assert_eq!(reply.status, StatusCode::OK, "{name} /open");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let mut small = Vec::new();
            for _ in 0..5 {
                small.push(get("/small").from(peer).send(&app).await.status.as_u16());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            assert_eq!(
                small,
                [200, 200, 200, 429, 429],
                "{name}: the fallback's limit"
            );
            for rule in ["login", "both", "open", "small"] {
                let errors = crate::support::counter(&metrics, "backend_errors", rule);
                assert_eq!(
                    errors,
                    if rule == "login" || rule == "both" {
                        8
                    } else {
                        5
                    },
                    "{name} {rule}"
                );
            }
            let missing = logs.lines_with("the redlimit module is not loaded on 127.0.0.1:");
            assert_eq!(missing.len(), 1, "{name}: logged once:\n{}", logs.text());
            assert!(
                missing[0].contains("ERROR") || missing[0].contains("WARN"),
                "{}",
                missing[0]
            );
            assert_eq!(
                logs.lines_with("no decision").len(),
                0,
                "{name}:\n{}",
                logs.text()
            );
            assert_eq!(logs.lines_with("answers again").len(), 0, "{name}");
        }

        // The module loaded: the server decides again (after the 1 ms cool-down), over
        // RESP2 and RESP3, and that is logged once per limiter.
        let (logs, _guard) = crate::support::capture_logs();
        let apps = [server.url(), format!("{}?protocol=resp3", server.url())].map(|url| {
            let limiter = RateLimiter::builder(Backend::redis(&url).unwrap())
                .timeout(TIMEOUT)
                .circuit_breaker(3, Duration::from_millis(1))
                .build()
                .unwrap();
            let config = Config::from_toml(MISSING_RULES).unwrap();
            app(RateLimitLayer::from_config(limiter, &config).unwrap())
        });
        for (app, peer) in apps.iter().zip(["203.0.113.40", "203.0.113.41"]) {
            let refused = get("/login").from(peer).send(app).await;
            assert_eq!(
                refused.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                binary.name()
            );
        }
        let _: () = redis::cmd("MODULE")
            .arg("LOAD")
            .arg(redlimit_test_support::module_path().to_str().unwrap())
            .query(&mut server.connection())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        for (app, peer) in apps.iter().zip(["203.0.113.40", "203.0.113.41"]) {
            let mut remaining = Vec::new();
            for _ in 0..3 {
                let reply = get("/login").from(peer).send(app).await;
                assert_eq!(reply.status, StatusCode::OK, "{}: {reply:?}", binary.name());
                remaining.push(reply.remaining("per-minute"));
            }
            assert_eq!(
                remaining,
                [4, 3, 2],
                "{} {peer}: decided by the server",
                binary.name()
            );
        }
        assert_eq!(logs.lines_with("not loaded").len(), 2, "{}", logs.text());
        assert_eq!(logs.lines_with("answers again").len(), 2, "{}", logs.text());
    }
}
