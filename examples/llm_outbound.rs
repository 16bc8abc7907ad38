//! Outbound limiting of calls to LLM providers: every (provider, tier) has a
//! requests-per-minute and a tokens-per-minute budget, shared by every process of the
//! fleet through Redis, and callers **wait until their call fits** instead of failing.
//!
//! ```text
//! cargo build -p redlimit-module
//! redis-server --port 6399 --loadmodule target/debug/libredlimit.so &
//! REDIS_URL=redis://127.0.0.1:6399 cargo run --example llm_outbound
//! ```
//!
//! `REDIS_URL` defaults to `redis://127.0.0.1:6379`. Nothing goes to the network but
//! Redis: a provider call is a sleep of a few milliseconds.
//!
//! The demo runs two limiters, standing for two processes of the fleet, each with its
//! own connection; calls alternate between them. So that the demo finishes in seconds,
//! one "minute" of the budgets lasts `LLM_DEMO_MINUTE_MS` milliseconds (default 3000);
//! set it to 60000 for real minutes.
//!
//! # Two limits per call, and why not two waits in a row
//!
//! A call needs one unit of the requests budget and `tokens` units of the tokens budget,
//! both **at the instant the call is sent**, because that is when the provider counts
//! them. The obvious code, `wait(requests)` then `wait(tokens)`, is wrong: the request
//! is reserved (counted at instant T1) while the caller then waits for tokens until T2.
//! The provider sees the request at T2, not T1, so calls that reserved different
//! instants can reach the provider together: reservations made at 0 s, 1 s and 2 s
//! for a bucket of 1 request per second can all be sent at 2 s, which the provider
//! refuses. And if the second wait fails (deadline), the first reservation is lost.
//!
//! `check_all` (`RL.ALL`) counts several limits at one instant, all or nothing, but it
//! takes one cost for every key, and here the costs differ (1 and `tokens`); it also
//! cannot reserve, so waiters would poll and a large call could starve behind small ones.
//!
//! What this example does instead ([`Lane::admit`]):
//!
//! 1. Peek both limits (nothing is counted) to see which one makes the call wait longer:
//!    that one is *binding*.
//! 2. `wait` on the binding limit: a token-bucket reservation (`MAXWAIT`), so waiters of
//!    the whole fleet are served in arrival order, and a large call keeps its place.
//!    The future sleeps until the reserved instant T.
//! 3. At T, `check` the other limit **without waiting**. Allowed: both are counted at T
//!    (give or take one round trip), the call goes out. Denied (another caller took the
//!    last unit meanwhile): the reservation is forfeited — counted but never sent, which
//!    wastes capacity but can never exceed the provider's limits — and the call starts
//!    again after the other limit's retry time, if its deadline allows.
//!
//! On a tie the requests limit is reserved first, because forfeiting one request costs
//! less than forfeiting thousands of tokens.
//!
//! Costs are the call's prompt tokens plus its `max_tokens`: the answer's length is
//! unknown when the call is sent, and there is no refund afterwards, so the budget is
//! charged the most the call can use (as many providers do). With `wait`, the
//! module admits a cost above the bucket's capacity when the reservation covers it; a
//! provider never does, so calls larger than the tokens-per-minute budget are refused
//! here, before asking.

use redlimit::{Backend, Decision, FailurePolicy, Policy, RateLimiter, Source};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
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

/// The limits of one (provider, tier): two token buckets, one Redis key each.
struct Lane {
    name: String,
    tier: &'static Tier,
    requests: Policy,
    tokens: Policy,
    requests_key: String,
    tokens_key: String,
}

/// What happened to one call.
#[derive(Clone, Debug)]
enum Outcome {
    Sent {
        /// Time spent waiting for capacity: reserved waits and retries after forfeits
        /// (round trips not included).
        waited: Duration,
        /// Which limit was reserved (the binding one).
        reserved: &'static str,
        /// Reservations forfeited because the other limit was full at the reserved instant.
        forfeits: u32,
    },
    /// The call is larger than the tokens-per-minute budget: no wait can make it fit.
    NeverFits,
    /// It would have to wait longer than its deadline.
    TooLong { wait: Duration },
}

/// One limit of a call: its name, key, policy and cost.
#[derive(Clone, Copy)]
struct Limit<'a> {
    name: &'static str,
    key: &'a str,
    policy: &'a Policy,
    cost: u64,
}

impl Lane {
    fn new(provider: &str, tier: &'static Tier, minute_ms: u64) -> Result<Self, redlimit::Error> {
        let name = format!("{provider}/{}", tier.name);
        // A full minute's budget at once, refilled continuously over the minute.
        let bucket = |per_minute| Policy::token_bucket(per_minute, per_minute, minute_ms);
        // The hash tag keeps both keys in one slot, should this run on a Redis Cluster.
        let tag = format!("llm:{{{name}}}");
        Ok(Self {
            requests: bucket(tier.requests_per_minute)?,
            tokens: bucket(tier.tokens_per_minute)?,
            requests_key: format!("{tag}:requests"),
            tokens_key: format!("{tag}:tokens"),
            name,
            tier,
        })
    }

    fn requests(&self) -> Limit<'_> {
        Limit {
            name: "requests",
            key: &self.requests_key,
            policy: &self.requests,
            cost: 1,
        }
    }

    fn tokens(&self, tokens: u64) -> Limit<'_> {
        Limit {
            name: "tokens",
            key: &self.tokens_key,
            policy: &self.tokens,
            cost: tokens,
        }
    }

    /// Waits until a call of `tokens` may be sent (see the module docs), at most until
    /// `deadline`, and counts it against both limits at the instant it is sent.
    async fn admit(
        &self,
        limiter: &RateLimiter,
        tokens: u64,
        deadline: Instant,
        sources: &Sources,
    ) -> Result<Outcome, redlimit::Error> {
        if tokens > self.tier.tokens_per_minute {
            return Ok(Outcome::NeverFits);
        }
        let mut waited = Duration::ZERO;
        let mut forfeits = 0;
        loop {
            // 1. Which limit binds now? Peeks count nothing.
            let (requests, tokens) = (self.requests(), self.tokens(tokens));
            let requests_peek = limiter.peek(requests.key, requests.policy, 1).await?;
            let tokens_peek = limiter.peek(tokens.key, tokens.policy, tokens.cost).await?;
            sources.record(&requests_peek);
            sources.record(&tokens_peek);
            let (requests_wait, tokens_wait) = (wait_of(&requests_peek), wait_of(&tokens_peek));
            let (binding, other) = if tokens_wait > requests_wait {
                (tokens, requests)
            } else {
                (requests, tokens)
            };
            // 2. Reserve the binding limit: served in arrival order; sleeps until T.
            let left = deadline.saturating_duration_since(Instant::now());
            let reserved = limiter
                .wait(binding.key, binding.policy, binding.cost, left)
                .await?;
            sources.record(&reserved);
            if !reserved.allowed {
                // A denied reservation's retry time is when a reservation with the same
                // `max_wait` would be admitted; the call would then wait `left` more.
                let retry = reserved.retry_after.unwrap_or(Duration::MAX);
                return Ok(Outcome::TooLong {
                    wait: waited.saturating_add(retry).saturating_add(left),
                });
            }
            // Admitted: `retry_after` is the reserved wait that `wait` has just slept.
            waited += reserved.retry_after.unwrap_or_default();
            // 3. At T (the reply's whole milliseconds, rounded up, plus a round trip),
            // the other limit, without waiting.
            let at_slot = limiter
                .check_cost(other.key, other.policy, other.cost)
                .await?;
            sources.record(&at_slot);
            if at_slot.allowed {
                return Ok(Outcome::Sent {
                    waited,
                    reserved: binding.name,
                    forfeits,
                });
            }
            // Forfeit the reservation (counted, never sent: safe) and try again later.
            forfeits += 1;
            let retry = at_slot.retry_after.unwrap_or(Duration::MAX);
            if Instant::now()
                .checked_add(retry)
                .is_none_or(|at| at > deadline)
            {
                return Ok(Outcome::TooLong {
                    wait: waited.saturating_add(retry),
                });
            }
            tokio::time::sleep(retry).await;
            waited += retry;
        }
    }
}

/// How long a peeked request would wait (`Duration::MAX` if it never can).
fn wait_of(decision: &Decision) -> Duration {
    decision.retry_after.unwrap_or(Duration::MAX)
}

/// Counts the decisions by who made them: all `server` unless Redis misbehaved.
#[derive(Default)]
struct Sources(Mutex<BTreeMap<&'static str, u64>>);

impl Sources {
    fn record(&self, decision: &Decision) {
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(decision.source.as_str())
            .or_default() += 1;
    }
}

/// A simulated call: `(lane index, tokens)`, arriving in this order.
fn workload() -> Vec<(usize, u64)> {
    let mut calls = Vec::new();
    // openai/free: small calls; its 3 requests per minute bind. The 7th would wait
    // longer than its deadline; the 8th asks for more tokens than a minute holds.
    calls.extend([350, 420, 380, 450, 300, 400, 390, 2_500].map(|t| (0, t)));
    // openai/pro: large calls; its 20,000 tokens per minute bind.
    calls.extend(
        [
            4_000, 3_500, 2_000, 4_500, 3_000, 2_500, 4_000, 1_500, 3_000, 2_500,
        ]
        .map(|t| (1, t)),
    );
    // anthropic/enterprise: plenty of room, nobody waits.
    calls.extend((0..8).map(|i| (2, 2_000 + 250 * i)));
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
    // A limiter per process: one multiplexed connection, shared by every task of the
    // process (clones are cheap). Outbound LLM calls take seconds, so a limiter timeout
    // of 250 ms costs nothing and rides out a loaded Redis. If Redis is down, every
    // process goes on shaping its own traffic to the full budget (the fallback): a
    // fleet of N processes may then send up to N times the budget and meet the
    // provider's own 429s, which callers handle anyway; `FailurePolicy::Closed` would
    // stop all LLM traffic during the outage.
    let limiter_of_process = || -> Result<RateLimiter, redlimit::Error> {
        RateLimiter::builder(Backend::redis(&url)?)
            .timeout(Duration::from_millis(250))
            .on_failure(FailurePolicy::Fallback)
            .build()
    };
    // Two "processes" of the fleet, each with its own limiter and connection: the calls
    // alternate between them, and the budgets are shared through Redis all the same.
    let fleet = [("A", limiter_of_process()?), ("B", limiter_of_process()?)];
    let limiter = &fleet[0].1;

    let lanes = Arc::new(vec![
        Lane::new("openai", &FREE, minute_ms)?,
        Lane::new("openai", &PRO, minute_ms)?,
        Lane::new("anthropic", &ENTERPRISE, minute_ms)?,
    ]);
    // `reset` takes no failure policy: it fails when the server is unreachable or the
    // module is missing, which makes it the demo's check that Redis is there.
    let keys: Vec<&str> = lanes
        .iter()
        .flat_map(|lane| [lane.requests_key.as_str(), lane.tokens_key.as_str()])
        .collect();
    if let Err(error) = limiter.reset(&keys).await {
        eprintln!("cannot use {url}: {error}");
        if error.is_module_not_loaded() {
            eprintln!("load the module: redis-server --loadmodule target/debug/libredlimit.so");
        }
        std::process::exit(1);
    }

    println!("redis: {url}; one budget minute lasts {minute_ms} ms in this demo");
    println!(
        "budgets per minute (token buckets: a minute's worth at once, refilled over the minute):"
    );
    for lane in lanes.iter() {
        println!(
            "  {:<22} {:>4} requests {:>8} tokens",
            lane.name, lane.tier.requests_per_minute, lane.tier.tokens_per_minute
        );
    }
    let deadline_after = Duration::from_millis((DEADLINE_MINUTES * minute_ms as f64) as u64);
    println!(
        "each call waits at most {} ms, then gives up",
        deadline_after.as_millis()
    );
    println!("calls are numbered in arrival order (5 ms apart) and made alternately by two");
    println!("processes, A and B; each line is printed when the call is sent or refused\n");

    let sources = Arc::new(Sources::default());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (number, (lane_index, tokens)) in workload().into_iter().enumerate() {
        // Calls arrive 5 ms apart, so their order is well defined.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (process, limiter) = fleet[number % fleet.len()].clone();
        let (lanes, sources) = (Arc::clone(&lanes), Arc::clone(&sources));
        tasks.push(tokio::spawn(async move {
            let lane = &lanes[lane_index];
            let deadline = Instant::now() + deadline_after;
            let outcome = lane.admit(&limiter, tokens, deadline, &sources).await;
            let at = start.elapsed();
            let line = format!(
                "[{:>6.3}s] {process} {:<22} call {number:>2} {tokens:>6} tokens",
                at.as_secs_f64(),
                lane.name
            );
            match &outcome {
                Ok(Outcome::Sent {
                    waited,
                    reserved,
                    forfeits,
                }) => {
                    let how = if waited.is_zero() {
                        "sent at once".to_owned()
                    } else {
                        format!(
                            "sent after waiting {:>4} ms ({reserved} limit reserved)",
                            waited.as_millis()
                        )
                    };
                    let again = if *forfeits > 0 {
                        format!(", {forfeits} reservation(s) forfeited")
                    } else {
                        String::new()
                    };
                    println!("{line}  {how}{again}");
                    // The simulated provider call.
                    tokio::time::sleep(Duration::from_millis(3 + tokens % 7)).await;
                }
                Ok(Outcome::NeverFits) => println!(
                    "{line}  REFUSED: never fits a budget of {} tokens per minute",
                    lane.tier.tokens_per_minute
                ),
                Ok(Outcome::TooLong { wait }) => println!(
                    "{line}  REFUSED: would wait {} ms, longer than its {} ms deadline",
                    wait.as_millis(),
                    deadline_after.as_millis()
                ),
                Err(error) => println!("{line}  ERROR: {error}"),
            }
            (lane_index, tokens, at, outcome)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await?);
    }

    println!(
        "\n| provider/tier | calls sent | refused | tokens sent | longest wait | forfeits | waiters served in arrival order |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    let mut errors = 0;
    for (index, lane) in lanes.iter().enumerate() {
        let mine: Vec<_> = results.iter().filter(|r| r.0 == index).collect();
        let (mut sent, mut refused, mut tokens_sent, mut longest, mut forfeits) =
            (0, 0, 0, Duration::ZERO, 0);
        let mut waiter_send_times = Vec::new();
        for (_, tokens, at, outcome) in &mine {
            match outcome {
                Ok(Outcome::Sent {
                    waited,
                    forfeits: f,
                    ..
                }) => {
                    sent += 1;
                    tokens_sent += tokens;
                    longest = longest.max(*waited);
                    forfeits += f;
                    if !waited.is_zero() {
                        waiter_send_times.push(*at);
                    }
                }
                Ok(_) => refused += 1,
                Err(_) => errors += 1,
            }
        }
        // Calls arrive in number order; were those that waited sent in that order?
        // (Calls sent at once may pass each other by a round trip's jitter.)
        let in_order = match waiter_send_times.len() {
            0 => "nobody waited".to_owned(),
            n if waiter_send_times.windows(2).all(|pair| pair[0] <= pair[1]) => {
                format!("yes ({n} waited)")
            }
            n => format!("NO ({n} waited)"),
        };
        println!(
            "| {} | {sent} | {refused} | {tokens_sent} | {} ms | {forfeits} | {} |",
            lane.name,
            longest.as_millis(),
            in_order
        );
    }
    let sources = sources
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    println!(
        "\ndecisions by source: {sources:?} (in {:.1} s)",
        start.elapsed().as_secs_f64()
    );
    if sources
        .keys()
        .any(|&source| source != Source::Server.as_str())
    {
        println!(
            "note: some decisions did not come from the server (timeout or outage): see above"
        );
    }
    if errors > 0 {
        return Err(format!("{errors} calls failed with an error").into());
    }
    Ok(())
}
