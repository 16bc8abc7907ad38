//! Reservations across several token buckets (`RL.ALL ... MAXWAIT`): one act time for
//! every limit, all or nothing.
//!
//! Each bucket `i` can take its cost `c_i` at the earliest instant `t_i` its refill
//! covers it (now, when it holds the tokens). The request acts at `T = max t_i`, if that
//! is within `MAXWAIT`, and every bucket is charged *as of `T`*: the provider counts the
//! call when it is sent, not when it was reserved.
//!
//! A bucket's deficit is `d` now, refilling `r` units per microsecond. The exact deficit
//! after charging `c` at `T` is `max(0, d - r(T - now)) + c` from `T` on, and
//! `d - r(t - now)` (the charge not yet made) before. One line cannot hold both, so the
//! bucket keeps the line `D(t) = max(d, r(T - now)) + c - r(t - now)`: **exactly** the
//! charged bucket from `T` on, and never less than the exact deficit before `T` (the
//! tokens that the bucket could not have held until `T` are counted as taken by the
//! reservation). Nobody can use, before `T`, tokens the reservation needs at `T`; later
//! reservations queue behind it: waiters are served in arrival order.
//!
//! The line is stored **anchored at the bucket's latest pending act time** `A =
//! max(T, the anchor it had)`: the deficit `D(A)` at `A` (see
//! [`BucketState`](crate::BucketState): before `A` the line extrapolates backwards). So a
//! later refund knows how long the bucket still waits for a reservation: refill until
//! `A` is padding that a bucket charged less might have lost, and a refund before `A`
//! gives back at most the refund less that refill (`adjust.rs`).

use crate::all::{AllOutcome, AllRequest, KeyStates};
use crate::decision::{Decision, RetryAfter};
use crate::limiter::{Limiter, Policy, WrongAlgorithm};
use crate::time::Timestamp;
use crate::token_bucket::TokenBucket;
use core::hash::Hash;
use core::time::Duration;

/// One bucket's view of the request: its deficit now, where its state is anchored, its
/// cost.
struct Standing {
    deficit: u128,
    anchor: Timestamp,
    need: u128,
}

/// Decides a reservation over token buckets only (the caller checked the policies).
pub(crate) fn reserve<'a, K, L, E>(
    limits: &'a [(K, Policy, u64)],
    now: Timestamp,
    request: AllRequest,
    mut keys: KeyStates<'a, K, L>,
) -> Result<AllOutcome, E>
where
    K: Hash + Eq,
    L: FnMut(usize, &K) -> Result<Option<Limiter>, E>,
    E: From<WrongAlgorithm>,
{
    let max_wait = Duration::from_millis(request.max_wait_ms);
    let buckets: Vec<TokenBucket> = limits
        .iter()
        .filter_map(|(_, policy, _)| match policy {
            Policy::TokenBucket(bucket) => Some(*bucket),
            _ => None,
        })
        .collect();
    let limits = || limits.iter().zip(&buckets).enumerate();
    // Pass 1: each bucket's earliest instant, a key named twice seeing its earlier
    // charge (taken at once: only the instant is wanted here).
    let mut waits: Vec<Option<Duration>> = Vec::with_capacity(buckets.len());
    let mut denied = Vec::with_capacity(buckets.len());
    for (index, ((key, _, cost), bucket)) in limits() {
        let slot = keys.slot(index, key)?;
        let Some((_, state, _)) = keys.states.get_mut(slot) else {
            continue;
        };
        let standing = standing(bucket, state.as_ref(), now, *cost)?;
        let wait = earliest(bucket, &standing, *cost);
        denied.push(pending_decision(bucket, &standing, wait, max_wait));
        waits.push(wait);
        if standing.need > 0 {
            let deficit = standing.deficit + standing.need;
            *state = Some(charged(*bucket, deficit, standing.anchor, now));
        }
    }
    let act_in = waits
        .iter()
        .try_fold(Duration::ZERO, |latest, wait| Some(latest.max((*wait)?)));
    let Some(act_in) = act_in.filter(|act_in| *act_in <= max_wait) else {
        return Ok(keys.outcome_denied(denied));
    };
    // Pass 2: every bucket charged as of `now + act_in`.
    keys.rewind();
    let act_at = now.plus_micros(u64::try_from(act_in.as_micros()).unwrap_or(u64::MAX));
    let retry_after = if act_in.is_zero() {
        RetryAfter::Now
    } else {
        RetryAfter::After(act_in)
    };
    let mut decisions = Vec::with_capacity(buckets.len());
    for (index, ((key, _, cost), bucket)) in limits() {
        let slot = keys.slot(index, key)?;
        let Some((_, state, changed)) = keys.states.get_mut(slot) else {
            continue;
        };
        let standing = standing(bucket, state.as_ref(), now, *cost)?;
        if standing.need == 0 {
            // A zero cost only asks: it may act now, whatever the others wait for.
            let reset = bucket.time_to_refill(standing.deficit);
            decisions.push(bucket.decision(true, standing.deficit, RetryAfter::Now, reset));
            continue;
        }
        let refilled_by_act = bucket.refill_in(act_at.micros_since(now));
        // Measured now; `deficit - refilled_by_act` is the exact deficit at the act time.
        let deficit = standing.deficit.max(refilled_by_act) + standing.need;
        if deficit - refilled_by_act > bucket.full() {
            // At the act time the bucket would have to hold more than it can: only costs
            // on one key summing above its capacity get here.
            let mut denied = denied;
            if let Some(decision) = denied.get_mut(index) {
                decision.allowed = false;
                decision.retry_after = RetryAfter::Never;
            }
            return Ok(keys.outcome_denied(denied));
        }
        let reset = bucket.time_to_refill(deficit);
        decisions.push(bucket.decision(true, deficit, retry_after, reset));
        // Anchored at the latest pending act time: this one or a later one already there.
        *state = Some(charged(*bucket, deficit, standing.anchor.max(act_at), now));
        *changed = true;
    }
    Ok(keys.outcome(decisions, request.peek))
}

/// The bucket's deficit at `now` (as of its measuring time) and the units `cost` needs.
fn standing(
    bucket: &TokenBucket,
    stored: Option<&Limiter>,
    now: Timestamp,
    cost: u64,
) -> Result<Standing, WrongAlgorithm> {
    let previous = match Limiter::live(stored, now) {
        None => None,
        Some(Limiter::TokenBucket(policy, state)) => Some((policy, state)),
        Some(other) => {
            return Err(WrongAlgorithm {
                stored: other.algorithm(),
            });
        }
    };
    let level = bucket.level(previous, now);
    Ok(Standing {
        deficit: level.deficit,
        anchor: level.anchor,
        need: u128::from(cost) * bucket.unit(),
    })
}

/// When the bucket can take `cost` from `now`, without borrowing; `None`: never (a cost
/// above the capacity: a provider never takes more than its budget at once).
fn earliest(bucket: &TokenBucket, standing: &Standing, cost: u64) -> Option<Duration> {
    if cost > bucket.capacity() {
        return None;
    }
    let after = standing.deficit + standing.need;
    Some(match after.checked_sub(bucket.full()) {
        Some(missing) if missing > 0 => bucket.time_to_refill(missing),
        _ => Duration::ZERO,
    })
}

/// The decision of one bucket when the request as a whole is denied: allowed when it
/// alone could act within `max_wait`, else when a retry with the same `MAXWAIT` could.
fn pending_decision(
    bucket: &TokenBucket,
    standing: &Standing,
    wait: Option<Duration>,
    max_wait: Duration,
) -> Decision {
    let reset = bucket.time_to_refill(standing.deficit);
    match wait {
        None => bucket.decision(false, standing.deficit, RetryAfter::Never, reset),
        Some(wait) if wait.is_zero() => {
            bucket.decision(true, standing.deficit, RetryAfter::Now, reset)
        }
        Some(wait) if wait <= max_wait => {
            bucket.decision(true, standing.deficit, RetryAfter::After(wait), reset)
        }
        Some(wait) => bucket.decision(
            false,
            standing.deficit,
            RetryAfter::After(wait - max_wait),
            reset,
        ),
    }
}

/// The bucket charged to `deficit` units measured at `now`, kept at `anchor`.
fn charged(bucket: TokenBucket, deficit: u128, anchor: Timestamp, now: Timestamp) -> Limiter {
    Limiter::TokenBucket(bucket, bucket.anchored(deficit, anchor, now))
}
