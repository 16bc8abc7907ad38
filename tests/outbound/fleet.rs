//! Two processes of a fleet (two limiters, each on its own connection) share a
//! provider's budgets of requests and tokens through one server, with `admit` and
//! `settle`; a simulated provider records what it receives, when.
//!
//! - No window exceeds either budget: the provider's budgets are token buckets, so in
//!   any interval of length `d` it accepts at most `capacity + rate * d`; checked for
//!   every interval between two receipts, with 50 ms for the scheduler's lateness.
//! - Waiters are served in arrival order: any two calls' tokens exceed the budget, so
//!   none may overtake another.
//! - No capacity is forfeited and settled refunds are reused: every admitted call was
//!   sent (one reservation, never a second limit that fails), and after the last settle
//!   the server's bucket holds far more than one charged the reserved costs would, yet
//!   never more than the provider's bucket charged the real costs at the receipt times
//!   (a refund of a charge made `SINCE` ago gives back only what that bucket can still
//!   hold; refunds that arrive while reservations are queued are dropped).

use redlimit::{Policy, RateLimiter};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WINDOW_MS: u64 = 500;
const REQUESTS: u64 = 4;
const TOKENS: u64 = 1_000;
/// How late a call may reach the provider after its reserved instant.
const LATENESS_MS: f64 = 50.0;

/// One call as the provider received it.
#[derive(Clone, Copy, Debug)]
struct Receipt {
    arrival: usize,
    at: Instant,
    reserved: u64,
    used: u64,
}

/// The most a token bucket of `capacity`, refilled `capacity` per window, lets through
/// in `span` (plus the lateness).
fn envelope(capacity: u64, span: Duration) -> f64 {
    let ms = span.as_secs_f64() * 1_000.0 + LATENESS_MS;
    capacity as f64 + capacity as f64 * ms / WINDOW_MS as f64
}

/// The level of a bucket of `TOKENS` charged `cost(receipt)` at each receipt, at `end`.
fn level(receipts: &[Receipt], start: Instant, end: Instant, cost: fn(&Receipt) -> u64) -> f64 {
    let rate = TOKENS as f64 / WINDOW_MS as f64;
    let (mut level, mut time) = (TOKENS as f64, start);
    for receipt in receipts {
        let ms = receipt.at.duration_since(time).as_secs_f64() * 1_000.0;
        level = (level + ms * rate).min(TOKENS as f64) - cost(receipt) as f64;
        time = receipt.at;
    }
    let ms = end.duration_since(time).as_secs_f64() * 1_000.0;
    (level + ms * rate).min(TOKENS as f64)
}

async fn fleet(url: &str, who: &str) {
    let process = || {
        RateLimiter::builder(super::client_backend(url))
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
    };
    let limiters = [process(), process()];
    let requests = Policy::token_bucket(REQUESTS, REQUESTS, WINDOW_MS).unwrap();
    let tokens = Policy::token_bucket(TOKENS, TOKENS, WINDOW_MS).unwrap();
    let provider: Arc<Mutex<Vec<Receipt>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for arrival in 0..12 {
        let limiter = limiters[arrival % 2].clone();
        let provider = Arc::clone(&provider);
        // Prompt + max_tokens: 600 to 900; the answer uses about half.
        let reserved = 600 + (arrival as u64 * 137) % 301;
        let used = reserved / 2 + (arrival as u64 * 31) % 50;
        tasks.push(tokio::spawn(async move {
            let call = [("{llm}:rpm", requests, 1), ("{llm}:tpm", tokens, reserved)];
            let permit = limiter
                .admit(&call, Duration::from_secs(30))
                .await
                .unwrap()
                .permit()
                .expect("admitted within 30 s");
            let at = Instant::now();
            provider.lock().unwrap().push(Receipt {
                arrival,
                at,
                reserved,
                used,
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            permit.settle(&[1, used]).await.unwrap();
        }));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    for task in tasks {
        task.await.unwrap();
    }
    let end = Instant::now();
    let mut receipts = provider.lock().unwrap().clone();
    receipts.sort_by_key(|receipt| receipt.at);
    let order: Vec<usize> = receipts.iter().map(|receipt| receipt.arrival).collect();
    assert_eq!(
        order,
        (0..12).collect::<Vec<_>>(),
        "{who}: served out of order"
    );
    for (i, first) in receipts.iter().enumerate() {
        for (j, last) in receipts.iter().enumerate().skip(i) {
            let span = last.at.duration_since(first.at);
            let sent = (j - i + 1) as f64;
            let used: u64 = receipts[i..=j].iter().map(|receipt| receipt.used).sum();
            assert!(
                sent <= envelope(REQUESTS, span),
                "{who}: {sent} requests in {span:?}"
            );
            assert!(
                used as f64 <= envelope(TOKENS, span),
                "{who}: {used} tokens in {span:?}"
            );
        }
    }
    let on_server = limiters[0]
        .peek("{llm}:tpm", &tokens, 0)
        .await
        .unwrap()
        .remaining as f64;
    let real = level(&receipts, start, Instant::now(), |receipt| receipt.used);
    let unsettled = level(&receipts, start, end, |receipt| receipt.reserved);
    let slack = TOKENS as f64 * LATENESS_MS / WINDOW_MS as f64;
    assert!(
        on_server <= real + slack,
        "{who}: the server holds {on_server} tokens, the provider's bucket {real:.0}"
    );
    assert!(
        on_server > unsettled + slack,
        "{who}: refunds should show: {on_server} against {unsettled:.0} unsettled"
    );
    println!(
        "{who}: 12 calls in {:.2} s, {on_server} tokens left (provider's bucket {real:.0}, \
         {unsettled:.0} without the refunds)",
        end.duration_since(start).as_secs_f64()
    );
}

#[tokio::test]
async fn a_fleet_admitting_and_settling_never_exceeds_the_provider() {
    for server in super::servers_for_client() {
        fleet(&server.url(), server.binary().name()).await;
    }
}
