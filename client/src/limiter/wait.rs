//! [`RateLimiter::wait`]: for outbound callers, wait until a request is allowed (in
//! arrival order for token buckets, by reservation) or give up at a deadline.

use super::RateLimiter;
use super::rates::check_cost;
use crate::decision::Decision;
use crate::error::Result;
use crate::observe;
use redlimit_core::{MAX_DURATION_MS, Policy, Request, TokenBucket};
use std::time::{Duration, Instant};

impl RateLimiter {
    /// Waits until a request of `cost` is allowed, at most `max_wait`, then returns
    /// the allowed decision; returns a denied decision at once when it cannot be
    /// allowed within `max_wait`.
    ///
    /// For a token bucket this is one call: the server reserves the tokens
    /// (`MAXWAIT`), so waiters are served in arrival order, and the future sleeps the
    /// reservation's wait. Dropping the future while it sleeps forfeits the reserved
    /// tokens (they stay spent) and leaves nothing else behind. For other policies it
    /// retries at each retry time until allowed or out of time.
    ///
    /// As the module's `MAXWAIT` defines it, a token bucket admits a reservation whose
    /// cost exceeds the capacity when the refill within `max_wait` covers it. A denied
    /// reservation's `retry_after` is the time until a call with the same `max_wait`
    /// could be admitted: the whole wait would be `retry_after + max_wait`.
    ///
    /// # Errors
    /// As [`check_cost`](Self::check_cost).
    pub async fn wait(
        &self,
        key: impl AsRef<[u8]>,
        policy: &Policy,
        cost: u64,
        max_wait: Duration,
    ) -> Result<Decision> {
        let (key, cost) = (key.as_ref(), check_cost(cost)?);
        let span = observe::span("wait");
        let decided = observe::within(&span, self.wait_for(key, policy, cost, max_wait)).await;
        observe::record(&span, &decided);
        decided
    }

    async fn wait_for(
        &self,
        key: &[u8],
        policy: &Policy,
        cost: u64,
        max_wait: Duration,
    ) -> Result<Decision> {
        // None: a wait too long to be a moment (`Duration::MAX`), so no deadline.
        let deadline = Instant::now().checked_add(max_wait);
        if let Policy::TokenBucket(bucket) = policy {
            let max_wait_ms = longest_max_wait(
                bucket,
                u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX),
            );
            let request = Request {
                max_wait_ms,
                ..Request::new(cost)
            };
            let decision = self.decide("wait", key, policy, request).await?;
            // (A zero wait must not sleep: a timer costs a tick, about a millisecond.)
            if let (true, Some(wait)) = (decision.allowed, decision.retry_after) {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            return Ok(decision);
        }
        loop {
            let decision = self.decide("wait", key, policy, Request::new(cost)).await?;
            let retry_at = decision.retry_after.map(|wait| Instant::now() + wait);
            match retry_at {
                _ if decision.allowed => return Ok(decision),
                Some(at) if deadline.is_none_or(|deadline| at <= deadline) => {
                    tokio::time::sleep_until(
                        at.max(Instant::now() + Duration::from_millis(1)).into(),
                    )
                    .await;
                }
                _ => return Ok(decision),
            }
        }
    }
}

/// `max_wait_ms`, or the longest `MAXWAIT` the bucket takes when it is longer. The
/// server bounds `MAXWAIT` so that what refills meanwhile fits 64 bits (at least a full
/// bucket; centuries for common rates): a longer wait, such as `Duration::MAX`, waits
/// for tokens that come within that bound and is denied otherwise, instead of failing.
pub(crate) fn longest_max_wait(bucket: &TokenBucket, max_wait_ms: u64) -> u64 {
    let max_wait_ms = max_wait_ms.min(MAX_DURATION_MS);
    if bucket.check_max_wait(max_wait_ms).is_ok() {
        return max_wait_ms;
    }
    // The bound is monotonic: search it (at most 44 steps, only for such long waits).
    let (mut fits, mut too_long) = (0, max_wait_ms);
    while too_long - fits > 1 {
        let middle = fits + (too_long - fits) / 2;
        if bucket.check_max_wait(middle).is_ok() {
            fits = middle;
        } else {
            too_long = middle;
        }
    }
    fits
}
