//! Deciding any command-valid policy and request, at any time, against any stored
//! state the decoder accepts: never a panic or an overflow, `remaining <= limit`, and
//! every state a call stores is one the decoder accepts back as itself (a command must
//! only write what RDB, `RESTORE` and `RL.SETSTATE` will load).
#![no_main]

use libfuzzer_sys::fuzz_target;
use redlimit_core::{
    Concurrency, FixedWindow, Limiter, Policy, Request, SlidingCounter, SlidingWindow, Throttle,
    Timestamp, TokenBucket,
};
use redlimit_fuzz::{DecideInput, check_acquire, check_canonical, check_decide};

fuzz_target!(|bytes: &[u8]| {
    let Some(input) = DecideInput::parse(bytes) else {
        return;
    };
    let stored = if input.state.is_empty() {
        None
    } else {
        let Ok(limiter) = Limiter::decode(&input.state) else {
            return;
        };
        check_canonical(&limiter, &input.state);
        Some(limiter)
    };
    let now = Timestamp::from_micros(input.now_micros);
    let [a, b, c] = input.numbers;
    // The checks the commands make before deciding.
    let Ok(cost) = Request::check_cost("COST", input.cost) else {
        return;
    };
    let mut request = Request {
        cost,
        peek: input.peek,
        max_wait_ms: 0,
    };
    let policy: Result<Policy, _> = match input.algorithm {
        0 => {
            let Ok(bucket) = TokenBucket::new(a, b, c) else {
                return;
            };
            let Ok(max_wait_ms) = bucket.check_max_wait(input.max_wait_ms) else {
                return;
            };
            request.max_wait_ms = max_wait_ms;
            Ok(Policy::TokenBucket(bucket))
        }
        1 => Throttle::new(a, b, c).map(Policy::Throttle),
        2 => FixedWindow::new(a, b).map(Policy::Fixed),
        3 => SlidingWindow::new(a, b).map(Policy::Sliding),
        4 => SlidingCounter::new(a, b).map(Policy::SlidingApprox),
        _ => {
            let Ok(policy) = Concurrency::new(a, b) else {
                return;
            };
            let Ok(id) = Concurrency::check_lease_id(&input.id) else {
                return;
            };
            let leases = match &stored {
                None => None,
                Some(Limiter::Concurrency(_, leases)) => Some(&**leases),
                Some(_) => return,
            };
            check_acquire(&policy, leases, now, id, input.peek);
            return;
        }
    };
    let Ok(policy) = policy else {
        return;
    };
    check_decide(&policy, stored.as_ref(), now, request);
    // A second call on what the first stored, at the same time and 1 ms later.
    if let Ok(outcome) = policy.decide(stored.as_ref(), now, request)
        && let Some(update) = outcome.update
    {
        for later in [now, now.plus_micros(1_000)] {
            check_decide(&policy, Some(&update), later, request);
        }
    }
});
