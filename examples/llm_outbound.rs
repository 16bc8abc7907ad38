//! Outbound limiting of calls to LLM providers: every (provider, tier) has a
//! requests-per-minute and a tokens-per-minute budget, shared by every process of the
//! fleet through Redis. Callers **wait in line until their call fits** both budgets, and
//! give back the tokens a call did not use once its response says how many it used.
//!
//! ```text
//! cargo build -p redlimit-module
//! redis-server --port 6399 --loadmodule target/debug/libredlimit.so &
//! REDIS_URL=redis://127.0.0.1:6399 cargo run --example llm_outbound
//! ```
//!
//! `REDIS_URL` defaults to `redis://127.0.0.1:6379`. Nothing goes to the network but
//! Redis: a provider call is a sleep of a few milliseconds. Two limiters stand for two
//! processes of the fleet, each with its own connection; calls alternate between them.
//! So that the demo finishes in seconds, one "minute" of the budgets lasts
//! `LLM_DEMO_MINUTE_MS` milliseconds (default 3000); set 60000 for real minutes.
//!
//! Per call, the whole protocol is two lines:
//!
//! 1. `limiter.admit(&[(requests, 1), (tokens, prompt + max_tokens)], deadline)`: one
//!    reservation across both budgets (`RL.ALL ... COSTS 1 N MAXWAIT ms`). The server
//!    finds the instant both can take the call, counts it in both **at that instant**
//!    (when the provider sees it), and the future sleeps until then. Waiters of the
//!    whole fleet are served in arrival order; a large call keeps its place; nothing is
//!    counted in one budget without the other.
//! 2. `permit.settle(&[1, used])` once the response says how many tokens were used: the
//!    difference goes back to the budget (`RL.ADJUST`) for the next callers.

use redlimit::{Admission, Backend, FailurePolicy, Policy, RateLimiter};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A provider account's tier and its budgets per minute.
struct Tier {
    name: &'static str,
    requests_per_minute: u64,
    tokens_per_minute: u64,
}

const FREE: Tier = Tier {
    name: "free",
    requests_per_minute: 3,
    tokens_per_minute: 2_000,
};
const PRO: Tier = Tier {
    name: "pro",
    requests_per_minute: 20,
    tokens_per_minute: 20_000,
};
const ENTERPRISE: Tier = Tier {
    name: "enterprise",
    requests_per_minute: 200,
    tokens_per_minute: 200_000,
};

/// The budgets of one (provider, tier): two token buckets, one Redis key each.
struct Lane {
    name: String,
    tier: &'static Tier,
    requests: (String, Policy),
    tokens: (String, Policy),
}

impl Lane {
    fn new(provider: &str, tier: &'static Tier, minute_ms: u64) -> Result<Self, redlimit::Error> {
        let name = format!("{provider}/{}", tier.name);
        // A full minute's budget at once, refilled continuously over the minute. The
        // hash tag keeps both keys in one slot, should this run on a Redis Cluster.
        let bucket = |per_minute| Policy::token_bucket(per_minute, per_minute, minute_ms);
        Ok(Self {
            requests: (
                format!("llm:{{{name}}}:rpm"),
                bucket(tier.requests_per_minute)?,
            ),
            tokens: (
                format!("llm:{{{name}}}:tpm"),
                bucket(tier.tokens_per_minute)?,
            ),
            name,
            tier,
        })
    }

    /// One call: 1 request and `tokens` tokens (prompt + max_tokens).
    fn call(&self, tokens: u64) -> [(&str, Policy, u64); 2] {
        [
            (&self.requests.0, self.requests.1, 1),
            (&self.tokens.0, self.tokens.1, tokens),
        ]
    }
}

/// A simulated call: `(lane, prompt + max_tokens, tokens the answer really used)`.
fn workload() -> Vec<(usize, u64, u64)> {
    let mut calls = Vec::new();
    // openai/free: small calls; its 3 requests per minute bind. The last asks for more
    // tokens than a minute holds: it can never go.
    calls.extend([350, 420, 380, 450, 300, 400, 2_500].map(|t| (0, t, t * 3 / 4)));
    // openai/pro: large calls that use about half their max_tokens: 46,000 tokens asked
    // for, 23,000 used, against 20,000 per minute. The tokens given back let most go
    // at once; the last ones wait in line.
    let pro = [
        6_000, 5_000, 3_000, 6_500, 4_500, 4_000, 6_000, 2_500, 4_500, 4_000,
    ];
    calls.extend(pro.map(|t| (1, t, t / 2)));
    // anthropic/enterprise: plenty of room, nobody waits.
    calls.extend((0..8).map(|i| (2, 2_000 + 250 * i, 1_500)));
    calls
}

/// The demo's deadline for one call, in simulated minutes.
const DEADLINE_MINUTES: f64 = 1.05;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let minute_ms: u64 = match std::env::var("LLM_DEMO_MINUTE_MS") {
        Ok(value) => value.parse()?,
        Err(_) => 3_000,
    };
    // A limiter per process: one multiplexed connection shared by every task (clones
    // are cheap). LLM calls take seconds, so a 250 ms limiter timeout costs nothing. If
    // Redis is down, each process shapes its own traffic to the full budget (fallback):
    // a fleet of N may then send N times the budget and meet the provider's 429s.
    let process = || -> Result<RateLimiter, redlimit::Error> {
        RateLimiter::builder(Backend::redis(&url)?)
            .timeout(Duration::from_millis(250))
            .on_failure(FailurePolicy::Fallback)
            .build()
    };
    let fleet = [("A", process()?), ("B", process()?)];
    let lanes = Arc::new(vec![
        Lane::new("openai", &FREE, minute_ms)?,
        Lane::new("openai", &PRO, minute_ms)?,
        Lane::new("anthropic", &ENTERPRISE, minute_ms)?,
    ]);
    // `reset` has no failure policy: it fails when Redis or the module is missing,
    // which makes it the demo's check that they are there.
    let keys: Vec<&str> = lanes
        .iter()
        .flat_map(|lane| [lane.requests.0.as_str(), lane.tokens.0.as_str()])
        .collect();
    if let Err(error) = fleet[0].1.reset(&keys).await {
        eprintln!("cannot use {url}: {error}");
        if error.is_module_not_loaded() {
            eprintln!("load the module: redis-server --loadmodule target/debug/libredlimit.so");
        }
        std::process::exit(1);
    }

    println!("redis: {url}; one budget minute lasts {minute_ms} ms in this demo");
    for lane in lanes.iter() {
        println!(
            "  {:<22} {:>4} requests {:>8} tokens per minute",
            lane.name, lane.tier.requests_per_minute, lane.tier.tokens_per_minute
        );
    }
    let deadline = Duration::from_millis((DEADLINE_MINUTES * minute_ms as f64) as u64);
    println!(
        "each call waits at most {} ms; calls arrive 5 ms apart,",
        deadline.as_millis()
    );
    println!("alternately from processes A and B; a line is printed when a call goes out\n");

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (number, (lane_index, reserved, used)) in workload().into_iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (process, limiter) = fleet[number % fleet.len()].clone();
        let lanes = Arc::clone(&lanes);
        tasks.push(tokio::spawn(async move {
            let lane = &lanes[lane_index];
            let admission = limiter.admit(&lane.call(reserved), deadline).await;
            let line = format!(
                "[{:>6.3}s] {process} {:<22} call {number:>2} {reserved:>6} tokens",
                start.elapsed().as_secs_f64(),
                lane.name
            );
            let sent = match admission {
                Ok(Admission::Admitted(permit)) => {
                    let waited = permit.waited();
                    println!(
                        "{line}  sent after {:>4} ms, used {used}",
                        waited.as_millis()
                    );
                    // The simulated provider call, then the real usage goes back.
                    tokio::time::sleep(Duration::from_millis(3 + reserved % 7)).await;
                    permit
                        .settle(&[1, used])
                        .await
                        .map(|()| Some((start.elapsed(), waited)))
                }
                Ok(Admission::Denied(all)) => {
                    match all.retry_after() {
                        None => println!("{line}  REFUSED: larger than the budget"),
                        Some(_) => println!("{line}  REFUSED: not within its deadline"),
                    }
                    Ok(None)
                }
                Err(error) => Err(error),
            };
            (lane_index, used, sent)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await?);
    }

    println!("\n| provider/tier | calls sent | refused | tokens used | longest wait |");
    println!("|---|---:|---:|---:|---:|");
    for (index, lane) in lanes.iter().enumerate() {
        let mine = results.iter().filter(|(lane, _, _)| *lane == index);
        let (mut sent, mut refused, mut tokens, mut longest) = (0, 0, 0, Duration::ZERO);
        for (_, used, outcome) in mine {
            match outcome {
                Ok(Some((_, waited))) => {
                    sent += 1;
                    tokens += used;
                    longest = longest.max(*waited);
                }
                Ok(None) => refused += 1,
                Err(error) => return Err(format!("{}: {error}", lane.name).into()),
            }
        }
        println!(
            "| {} | {sent} | {refused} | {tokens} | {} ms |",
            lane.name,
            longest.as_millis()
        );
    }
    println!("\ndone in {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
