//! Two processes of a fleet (two limiters, each on its own connection) share a
//! provider's budgets of requests and tokens through one server, with `admit` and
//! `settle`; a simulated provider records what it receives, when.
//!
//! - No window exceeds either budget: the provider's budgets are token buckets, so in
//!   any interval of length `d` it accepts at most `capacity + rate * d`; checked for
//!   every interval between two receipts, with 50 ms for the scheduler's lateness.
//! - Refunds while reservations wait on the *other* bucket: small calls (100 to 300
//!   tokens) wait for the request budget (one request per 125 ms) with their tokens
//!   reserved but no token debt, large ones (400 to 700) may wait for the token budget; every
//!   settle refunds tokens while later calls are queued. After each settle the server's
//!   token bucket never holds more than the provider's bucket charged the real costs
//!   (a refund before a bucket's pending act time gives back at most the refund less
//!   the refill until then).
//! - Waiters are served in arrival order: any two calls' requests exceed the request
//!   budget, so none may overtake another.
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
/// One request per `REQUEST_MS`: every call waits for the one before it.
const REQUESTS: u64 = 1;
const REQUEST_MS: u64 = 125;
const TOKENS: u64 = 1_000;
const CALLS: usize = 12;
/// Calls arrive a little faster than the request budget lets them out: from the fourth
/// on, the next call is already queued (its tokens reserved, waiting for the request
/// budget, no token debt) when one settles.
const ARRIVAL_MS: u64 = 100;
/// How late a call may reach the provider after its reserved instant.
const LATENESS_MS: f64 = 50.0;

/// One call as the provider received it.
#[derive(Clone, Copy, Debug)]
struct Receipt {
    arrival: usize,
    /// When the call asked `admit` (its reservation).
    asked: Instant,
    at: Instant,
    reserved: u64,
    used: u64,
}

/// One call's settle: the tokens the server's bucket held as the call went out (at
/// `at`), just before the settle (started at `started`), and after it (asked at
/// `asked`).
#[derive(Clone, Copy, Debug)]
struct Settle {
    at: Instant,
    sent: u64,
    started: Instant,
    before: u64,
    asked: Instant,
    after: u64,
}

/// The most a token bucket of `capacity`, refilled `capacity` per `period_ms`, lets
/// through in `span` (plus the lateness).
fn envelope(capacity: u64, period_ms: u64, span: Duration) -> f64 {
    let ms = span.as_secs_f64() * 1_000.0 + LATENESS_MS;
    capacity as f64 + capacity as f64 * ms / period_ms as f64
}

/// The level of a bucket of `TOKENS` charged `cost(receipt)` at each receipt received by
/// `end`, at `end`.
fn level(receipts: &[Receipt], start: Instant, end: Instant, cost: fn(&Receipt) -> u64) -> f64 {
    let rate = TOKENS as f64 / WINDOW_MS as f64;
    let (mut level, mut time) = (TOKENS as f64, start);
    for receipt in receipts.iter().filter(|receipt| receipt.at <= end) {
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
    let requests = Policy::token_bucket(REQUESTS, REQUESTS, REQUEST_MS).unwrap();
    let tokens = Policy::token_bucket(TOKENS, TOKENS, WINDOW_MS).unwrap();
    let provider: Arc<Mutex<Vec<Receipt>>> = Arc::default();
    let settled: Arc<Mutex<Vec<Settle>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for arrival in 0..CALLS {
        let limiter = limiters[arrival % 2].clone();
        let provider = Arc::clone(&provider);
        let settled = Arc::clone(&settled);
        // Prompt + max_tokens: 100 to 300 (the request budget binds) or 400 to 700 (the
        // token budget may bind); the answer uses about half.
        let reserved = if arrival % 3 == 2 {
            400 + (arrival as u64 * 137) % 301
        } else {
            100 + (arrival as u64 * 71) % 201
        };
        let used = reserved / 2 + (arrival as u64 * 31) % 50;
        tasks.push(tokio::spawn(async move {
            let asked = Instant::now();
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
                asked,
                at,
                reserved,
                used,
            });
            let held = |limiter: redlimit::RateLimiter| async move {
                let remaining = limiter
                    .peek("{llm}:tpm", &tokens, 0)
                    .await
                    .unwrap()
                    .remaining;
                (remaining, limiter)
            };
            // What the server holds as the call goes out (its charge counted, both sides).
            let (sent, limiter) = held(limiter).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (before, limiter) = held(limiter).await;
            let started = Instant::now();
            permit.settle(&[1, used]).await.unwrap();
            let asked = Instant::now();
            let (after, _) = held(limiter).await;
            settled.lock().unwrap().push(Settle {
                at,
                sent,
                started,
                before,
                asked,
                after,
            });
        }));
        tokio::time::sleep(Duration::from_millis(ARRIVAL_MS)).await;
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
        (0..CALLS).collect::<Vec<_>>(),
        "{who}: served out of order"
    );
    for (i, first) in receipts.iter().enumerate() {
        for (j, last) in receipts.iter().enumerate().skip(i) {
            let span = last.at.duration_since(first.at);
            let sent = (j - i + 1) as f64;
            let used: u64 = receipts[i..=j].iter().map(|receipt| receipt.used).sum();
            assert!(
                sent <= envelope(REQUESTS, REQUEST_MS, span),
                "{who}: {sent} requests in {span:?}"
            );
            assert!(
                used as f64 <= envelope(TOKENS, WINDOW_MS, span),
                "{who}: {used} tokens in {span:?}"
            );
        }
    }
    let slack = TOKENS as f64 * LATENESS_MS / WINDOW_MS as f64;
    let settled = settled.lock().unwrap().clone();
    assert_eq!(settled.len(), CALLS);
    let mut behind_a_queue = 0;
    for settle in &settled {
        let real = level(&receipts, start, settle.at, |receipt| receipt.used);
        assert!(
            settle.sent as f64 <= real + slack,
            "{who}: as a call went out the server held {} tokens, the provider's bucket {real:.0}",
            settle.sent
        );
        let real = level(&receipts, start, settle.asked, |receipt| receipt.used);
        assert!(
            settle.after as f64 <= real + slack,
            "{who}: after a settle the server held {} tokens, the provider's bucket {real:.0}",
            settle.after
        );
        // Tokens left (no token debt) while another call waited with its tokens reserved.
        let queued = receipts
            .iter()
            .any(|r| r.asked < settle.started && r.at > settle.started + Duration::from_millis(5));
        if queued && settle.before > 0 {
            behind_a_queue += 1;
        }
    }
    assert!(
        behind_a_queue >= 3,
        "{who}: only {behind_a_queue} refunds while a reservation waited on the request budget"
    );
    let on_server = limiters[0]
        .peek("{llm}:tpm", &tokens, 0)
        .await
        .unwrap()
        .remaining as f64;
    let real = level(&receipts, start, Instant::now(), |receipt| receipt.used);
    let unsettled = level(&receipts, start, end, |receipt| receipt.reserved);
    assert!(
        on_server <= real + slack,
        "{who}: the server holds {on_server} tokens, the provider's bucket {real:.0}"
    );
    assert!(
        on_server > unsettled + slack,
        "{who}: refunds should show: {on_server} against {unsettled:.0} unsettled"
    );
    println!(
        "{who}: {CALLS} calls in {:.2} s, {behind_a_queue} settled while another waited on the \
         request budget; {on_server} tokens left (provider's bucket {real:.0}, {unsettled:.0} \
         without the refunds)",
        end.duration_since(start).as_secs_f64()
    );
}

#[tokio::test]
async fn a_fleet_admitting_and_settling_never_exceeds_the_provider() {
    for server in super::servers_for_client() {
        fleet(&server.url(), server.binary().name()).await;
    }
}
