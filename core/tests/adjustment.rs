//! `Policy::adjust` (`RL.ADJUST`) against plain models, interleaved with decisions:
//! a refund never lifts a limiter above full, a charge goes into debt down to the
//! documented bound (token bucket: -capacity; windows: the limit), and every later
//! decision answers as the model does. An adjustment answers what a request of cost 1
//! would get afterwards, as `RL.STATUS` does.

use proptest::prelude::*;
use redlimit_core::{
    Adjustment, FixedWindow, Limiter, Policy, Request, SlidingWindow, Timestamp, TokenBucket,
};

const START_MS: u64 = 1_700_000_000_000;

#[derive(Clone, Copy, Debug)]
enum Op {
    Take(u64),
    Refund(u64),
    Charge(u64),
}

fn ops() -> impl Strategy<Value = Vec<(u64, Op)>> {
    let op = prop_oneof![
        (0u64..8).prop_map(Op::Take),
        (0u64..12).prop_map(Op::Refund),
        (0u64..12).prop_map(Op::Charge),
    ];
    prop::collection::vec((0u64..1_500, op), 1..60)
}

/// Runs `op` at `now` on `stored` under `policy`; the decision's `allowed` and
/// `remaining` (for a take: of the take; for an adjustment: of a cost-1 status).
fn run(policy: &Policy, stored: &mut Option<Limiter>, now: Timestamp, op: Op) -> (bool, u64) {
    let outcome = match op {
        Op::Take(cost) => policy.decide(stored.as_ref(), now, Request::new(cost)),
        Op::Refund(n) => policy.adjust(stored.as_ref(), now, Adjustment::Refund(n)),
        Op::Charge(n) => policy.adjust(stored.as_ref(), now, Adjustment::Charge(n)),
    }
    .unwrap();
    if let Some(update) = outcome.update {
        *stored = Some(update);
    }
    (outcome.decision.allowed, outcome.decision.remaining)
}

/// The `remaining` a decision reports with `available` units left: after a take, the
/// units left; after an adjustment, what a request of cost 1 would leave (as `RL.STATUS`).
fn after(op: Op, available: u64) -> u64 {
    match op {
        Op::Take(_) => available,
        Op::Refund(_) | Op::Charge(_) => available.saturating_sub(1),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// Model: an exact level in units, refilled continuously, at most full, at least
    /// -capacity after a charge; no refund below zero.
    #[test]
    fn token_bucket_adjustments_follow_the_level(
        capacity in 1u64..15, refill_tokens in 1u64..4, refill_ms in 1u64..1_000, steps in ops(),
    ) {
        let policy = Policy::TokenBucket(TokenBucket::new(capacity, refill_tokens, refill_ms).unwrap());
        let unit = i128::from(refill_ms) * 1_000;
        let full = i128::from(capacity) * unit;
        let (mut level, mut stored, mut now_ms) = (full, None, START_MS);
        for (dt, op) in steps {
            now_ms += dt;
            level = (level + i128::from(dt) * 1_000 * i128::from(refill_tokens)).min(full);
            let (allowed, remaining) = run(&policy, &mut stored, Timestamp::from_millis(now_ms), op);
            match op {
                Op::Take(cost) => {
                    let need = i128::from(cost) * unit;
                    prop_assert_eq!(allowed, level >= need);
                    if allowed { level -= need; }
                }
                // In debt (below zero) a bucket takes no refund: queued reservations may
                // have been planned with what is owed.
                Op::Refund(_) if level < 0 => {}
                Op::Refund(n) => level = (level + i128::from(n) * unit).min(full),
                Op::Charge(n) => level = (level - i128::from(n) * unit).max(level.min(-full)),
            }
            let available = u64::try_from(level.max(0) / unit).unwrap();
            prop_assert_eq!(remaining, after(op, available), "{:?}", op);
        }
    }

    /// Model: a count per epoch-aligned window, refunds down to 0, charges up to the limit.
    #[test]
    fn fixed_window_adjustments_follow_the_count(
        limit in 1u64..15, window_ms in 1u64..3_000, steps in ops(),
    ) {
        let policy = Policy::Fixed(FixedWindow::new(limit, window_ms).unwrap());
        let (mut stored, mut now_ms, mut window, mut count) = (None, START_MS, 0, 0u64);
        for (dt, op) in steps {
            now_ms += dt;
            if now_ms / window_ms != window {
                (window, count) = (now_ms / window_ms, 0);
            }
            let (allowed, remaining) = run(&policy, &mut stored, Timestamp::from_millis(now_ms), op);
            match op {
                Op::Take(cost) => {
                    prop_assert_eq!(allowed, count + cost <= limit);
                    if allowed { count += cost; }
                }
                Op::Refund(n) => count -= n.min(count),
                Op::Charge(n) => count = (count + n).min(count.max(limit)),
            }
            prop_assert_eq!(remaining, after(op, limit - count));
        }
    }

    /// Model: the log of `(time, cost)`; refunds from the oldest entries, charges logged
    /// now up to the limit.
    #[test]
    fn sliding_log_adjustments_follow_the_log(
        limit in 1u64..15, window_ms in 1u64..3_000, steps in ops(),
    ) {
        let policy = Policy::Sliding(SlidingWindow::new(limit, window_ms).unwrap());
        let (mut stored, mut now_ms) = (None, START_MS);
        let mut log: Vec<(u64, u64)> = Vec::new();
        for (dt, op) in steps {
            now_ms += dt;
            log.retain(|(t, _)| t + window_ms > now_ms);
            let used: u64 = log.iter().map(|(_, c)| c).sum();
            let (allowed, remaining) = run(&policy, &mut stored, Timestamp::from_millis(now_ms), op);
            match op {
                Op::Take(cost) => {
                    prop_assert_eq!(allowed, used + cost <= limit);
                    if allowed && cost > 0 { log.push((now_ms, cost)); }
                }
                Op::Refund(mut n) => {
                    for entry in &mut log {
                        let taken = entry.1.min(n);
                        entry.1 -= taken;
                        n -= taken;
                    }
                    log.retain(|(_, c)| *c > 0);
                }
                Op::Charge(n) => {
                    let n = n.min(limit.saturating_sub(used));
                    if n > 0 { log.push((now_ms, n)); }
                }
            }
            let used: u64 = log.iter().map(|(_, c)| c).sum();
            prop_assert_eq!(remaining, after(op, limit - used));
            if let Some(limiter) = &stored {
                prop_assert_eq!(&Limiter::decode(&limiter.encode()).unwrap(), limiter);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// Calls charge the most they may use and settle `delay` later (other calls charged
    /// meanwhile) with a refund of what they did not use: the bucket never holds more
    /// than an exact bucket charged the real costs at the act times.
    #[test]
    fn refunds_of_past_charges_never_give_back_more_than_charging_less(
        capacity in 1u64..30, refill_tokens in 1u64..5, refill_ms in 1u64..500,
        calls in prop::collection::vec((0u64..800, 1u64..30, 0u64..30, 0u64..3_000), 1..30),
    ) {
        let policy = Policy::TokenBucket(TokenBucket::new(capacity, refill_tokens, refill_ms).unwrap());
        let unit = i128::from(refill_ms) * 1_000;
        let full = i128::from(capacity) * unit;
        let per_ms = 1_000 * i128::from(refill_tokens);
        // Events: (time, 0 = take / 1 = settle, call index).
        let mut events = Vec::new();
        let mut t = START_MS;
        for (k, (dt, _, _, delay)) in calls.iter().enumerate() {
            t += dt;
            events.push((t, 0, k));
            events.push((t + delay, 1, k));
        }
        events.sort();
        let (mut stored, mut acted): (Option<Limiter>, Vec<Option<u64>>) = (None, vec![None; calls.len()]);
        for (now_ms, kind, k) in events {
            let (_, charged, used, _) = calls[k];
            let used = used.min(charged);
            let at = Timestamp::from_millis(now_ms);
            if kind == 0 {
                let outcome = policy.decide(stored.as_ref(), at, Request::new(charged)).unwrap();
                if outcome.decision.allowed {
                    stored = outcome.update;
                    acted[k] = Some(now_ms);
                }
                continue;
            }
            let Some(act_ms) = acted[k] else { continue };
            let refund = Adjustment::Refund(charged - used).since(now_ms - act_ms);
            if let Some(update) = policy.adjust(stored.as_ref(), at, refund).unwrap().update {
                stored = Some(update);
            }
            // The exact bucket, charged the real costs at the act times.
            let mut charges: Vec<(u64, u64)> = acted.iter().enumerate()
                .filter_map(|(i, a)| a.map(|a| (a, calls[i].2.min(calls[i].1))))
                .collect();
            charges.sort();
            let (mut level, mut time) = (full, START_MS);
            for (a, u) in charges.into_iter().chain(std::iter::once((now_ms, 0))) {
                level = (level + i128::from(a - time) * per_ms).min(full) - i128::from(u) * unit;
                time = a;
            }
            let peek = Request { peek: true, ..Request::new(0) };
            let available = policy.decide(stored.as_ref(), at, peek).unwrap().decision.remaining;
            let exact = u64::try_from(level.max(0) / unit).unwrap();
            prop_assert!(available <= exact, "{} tokens, an exact bucket {}", available, exact);
        }
    }
}
