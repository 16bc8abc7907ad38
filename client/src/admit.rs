//! [`RateLimiter::admit`]: one call that needs several limits at once, each with its
//! own cost (1 request and N tokens), waiting in line until all of them can take it, and
//! a [`Permit`] to [settle](Permit::settle) once the real cost is known.
//!
//! Over token buckets this is one `RL.ALL ... COSTS ... MAXWAIT` reservation: the
//! server picks the instant every bucket can take its cost, charges them all as of that
//! instant, and the future sleeps until then. Waiters of the whole fleet are served in
//! arrival order and nothing is forfeited. Over windows (which cannot reserve a later
//! instant), it retries at each retry time until admitted or out of time.

use crate::backend::one_slot;
use crate::decision::{AllDecision, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::limiter::{RateLimiter, longest_max_wait};
use crate::{local, observe, protocol};
use redis::Value;
use redlimit_core::{AllRequest, MAX_ALL_LIMITS, MAX_COUNT, Policy};
use std::time::{Duration, Instant};

pub use crate::permit::Permit;

/// What [`RateLimiter::admit`] answers.
#[derive(Debug)]
#[must_use = "a permit must be settled (or cancelled) once the call is done"]
pub enum Admission {
    /// The call may go out now: every limit counted its cost. Settle the permit with the
    /// real costs once known.
    Admitted(Permit),
    /// The call cannot go out within the wait allowed: nothing was counted anywhere.
    /// Each decision says what its limit alone answered; [`AllDecision::retry_after`]
    /// is when a retry with the same wait could be admitted (`None`: never, a cost
    /// above a limit).
    Denied(AllDecision),
}

impl Admission {
    /// The permit, if admitted.
    #[must_use]
    pub fn permit(self) -> Option<Permit> {
        match self {
            Self::Admitted(permit) => Some(permit),
            Self::Denied(_) => None,
        }
    }
}

/// One limit of an admitted call, owned: key, policy, cost.
pub(crate) type Charge = (Vec<u8>, Policy, u64);

impl RateLimiter {
    /// Waits until a call costing `cost` at every `(key, policy, cost)` of `limits` may
    /// go out, at most `max_wait`, and counts it against all of them at that instant
    /// (`RL.ALL ... COSTS ... MAXWAIT`): all or nothing, one round trip for token
    /// buckets. Returns [`Admission::Admitted`] once the call may go out, or
    /// [`Admission::Denied`] at once when it cannot within `max_wait`.
    ///
    /// - **Token buckets** reserve: waiters are served in arrival order, a large call
    ///   keeps its place, no limit is counted without the others, and a cost above a
    ///   bucket's capacity is denied (a provider never takes it). `max_wait` above what
    ///   a bucket's `MAXWAIT` accepts waits for tokens that come within that bound.
    /// - **Windows** cannot reserve a later instant: the call is retried at each retry
    ///   time until admitted or past `max_wait`.
    /// - **Cancel-safe:** dropping the future while it waits for its reserved instant
    ///   gives the reservation back where the algorithm allows (`RL.ADJUST` refunds, on
    ///   the tokio runtime): not on a bucket in debt, where others may be queued behind
    ///   it. A future dropped during the round trip gives nothing back (whether the
    ///   server counted it is unknown; keeping it never over-admits).
    /// - **When the server is unavailable**, the
    ///   [`FailurePolicy`](crate::FailurePolicy) answers: fallback reserves in memory,
    ///   open admits (nothing to settle), closed denies, error returns the error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), redlimit::Error> {
    /// use redlimit::{Admission, Policy, RateLimiter};
    /// use std::time::Duration;
    /// let limiter = RateLimiter::memory();
    /// let requests = Policy::token_bucket(20, 20, 60_000)?;
    /// let tokens = Policy::token_bucket(20_000, 20_000, 60_000)?;
    /// // Prompt + max_tokens, charged up front; 1 request.
    /// let call = [("openai:rpm", requests, 1), ("openai:tpm", tokens, 1_200 + 4_000)];
    /// let Admission::Admitted(permit) = limiter.admit(&call, Duration::from_secs(30)).await? else {
    ///     panic!("20,000 tokens are there");
    /// };
    /// // ... send the call; the response says 1,200 + 850 tokens were used.
    /// permit.settle(&[1, 2_050]).await?;
    /// // 3,150 back, less at most the refill since the call (a full bucket loses it).
    /// let left = limiter.peek("openai:tpm", &tokens, 0).await?;
    /// assert!((17_940..=17_950).contains(&left.remaining));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// No limits or more than 32, a throttle policy, a cost above 2^62, keys in several
    /// cluster slots ([`ErrorKind::CrossSlot`]); the server's errors
    /// ([`FailurePolicy::Error`](crate::FailurePolicy::Error) only, for unavailability).
    pub async fn admit<K: AsRef<[u8]>>(
        &self,
        limits: &[(K, Policy, u64)],
        max_wait: Duration,
    ) -> Result<Admission> {
        let charges = checked(limits)?;
        let deadline = Instant::now().checked_add(max_wait);
        let max_wait_ms = u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX);
        let buckets: Vec<_> = charges
            .iter()
            .filter_map(|(_, policy, _)| match policy {
                Policy::TokenBucket(bucket) => Some(bucket),
                _ => None,
            })
            .collect();
        if buckets.len() == charges.len() {
            let max_wait_ms = buckets
                .iter()
                .map(|bucket| longest_max_wait(bucket, max_wait_ms))
                .min()
                .unwrap_or(0);
            let request = AllRequest {
                peek: false,
                max_wait_ms,
            };
            let sent_at = Instant::now();
            let all = self.decide_each(&charges, request).await?;
            if !all.allowed {
                return Ok(Admission::Denied(all));
            }
            let wait = act_wait(&all);
            let mut permit = Permit::reserved(self.clone(), charges, all, sent_at, wait);
            if !wait.is_zero() {
                // Dropped here, the pending permit gives its reservation back.
                tokio::time::sleep(wait).await;
            }
            permit.activate();
            return Ok(Admission::Admitted(permit));
        }
        let started = Instant::now();
        loop {
            let sent_at = Instant::now();
            let all = self.decide_each(&charges, AllRequest::default()).await?;
            if all.allowed {
                let mut permit =
                    Permit::reserved(self.clone(), charges, all, sent_at, Duration::ZERO)
                        .waited_in_all(started.elapsed());
                permit.activate();
                return Ok(Admission::Admitted(permit));
            }
            let retry_at = all.retry_after().map(|wait| Instant::now() + wait);
            match retry_at {
                Some(at) if deadline.is_none_or(|deadline| at <= deadline) => {
                    let at = at.max(Instant::now() + Duration::from_millis(1));
                    tokio::time::sleep_until(at.into()).await;
                }
                _ => return Ok(Admission::Denied(all)),
            }
        }
    }

    /// One `RL.ALL` with a cost per key, under the timeout, breaker and failure policy.
    pub(crate) async fn decide_each(
        &self,
        charges: &[Charge],
        request: AllRequest,
    ) -> Result<AllDecision> {
        let started = Instant::now();
        let local_each =
            |store: &crate::local::LocalStore| store.decide_each(charges, request, local::now());
        let all = match self.remote() {
            None => AllDecision::from_core(local_each(&self.shared.local)?, Source::Memory),
            Some(remote) => {
                let cmd = protocol::all_each(charges, request)?;
                let slot = if self.shared.is_cluster {
                    one_slot(charges.iter().map(|(key, _, _)| key))?
                } else {
                    None
                };
                let parse = |value: &Value| protocol::parse_all(value, charges.len());
                match self.call(remote, "admit", &cmd, slot, parse).await {
                    Ok(all) => all,
                    Err(error) => self.fail_all(
                        error,
                        charges.iter().map(|(_, policy, cost)| (policy, *cost)),
                        local_each,
                    )?,
                }
            }
        };
        observe::decision("admit", all.allowed, all.source, started.elapsed());
        Ok(all)
    }
}

/// The wait before acting of an admitted reservation: the same in every decision.
fn act_wait(all: &AllDecision) -> Duration {
    all.decisions
        .iter()
        .filter_map(|decision| decision.retry_after)
        .max()
        .unwrap_or_default()
}

/// `limits` owned, after the checks the server would make.
fn checked<K: AsRef<[u8]>>(limits: &[(K, Policy, u64)]) -> Result<Vec<Charge>> {
    let invalid = |detail: String| Err(Error::new(ErrorKind::InvalidArgument, detail));
    if limits.is_empty() || limits.len() as u64 > MAX_ALL_LIMITS {
        return invalid(format!(
            "a call is admitted against 1 to {MAX_ALL_LIMITS} limits, not {}",
            limits.len()
        ));
    }
    let mut charges = Vec::with_capacity(limits.len());
    for (index, (key, policy, cost)) in limits.iter().enumerate() {
        if *cost > MAX_COUNT {
            return invalid(format!("cost {} must be at most {MAX_COUNT}", index + 1));
        }
        if matches!(policy, Policy::Throttle(_)) {
            return invalid(format!(
                "limit {} is a throttle: a call is admitted against token buckets and windows",
                index + 1
            ));
        }
        charges.push((key.as_ref().to_vec(), *policy, *cost));
    }
    Ok(charges)
}
