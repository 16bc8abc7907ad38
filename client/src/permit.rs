//! [`Permit`]: an admitted call's charges, to correct once its real cost is known.

use crate::admit::Charge;
use crate::decision::{AllDecision, Source};
use crate::error::{Error, ErrorKind, Result};
use crate::limiter::{FailurePolicy, RateLimiter};
use crate::{local, protocol};
use redis::Value;
use redlimit_core::{Adjustment, MAX_COUNT};
use std::time::{Duration, Instant};

/// Where a permit stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Reserved; its instant has not come (the `admit` future is still waiting).
    Pending,
    /// Handed to the caller: the call may have gone out.
    Active,
    /// Settled or cancelled.
    Done,
}

/// An admitted call: every limit counted its cost. Once the call is done,
/// [`settle`](Self::settle) it with what it really cost (a refund of what it did not
/// use, or a charge of what it used beyond), or [`cancel`](Self::cancel) it if the call
/// was never made. A permit dropped without either keeps its charges as they are: it
/// cannot know whether the call went out, and keeping them never over-admits.
#[derive(Debug)]
#[must_use = "settle the permit with the real costs once the call is done"]
pub struct Permit {
    limiter: RateLimiter,
    charges: Vec<Charge>,
    decision: AllDecision,
    waited: Duration,
    /// When the admitting request was sent, and how long after its decision the call
    /// was to act (ms, rounded up): bound how long ago the charges counted.
    sent_at: Instant,
    act_wait: Duration,
    stage: Stage,
}

impl Permit {
    /// A reservation made by `admit`, pending until its instant comes.
    pub(crate) fn reserved(
        limiter: RateLimiter,
        charges: Vec<Charge>,
        decision: AllDecision,
        sent_at: Instant,
        act_wait: Duration,
    ) -> Self {
        Self {
            limiter,
            charges,
            decision,
            waited: act_wait,
            sent_at,
            act_wait,
            stage: Stage::Pending,
        }
    }

    /// How long `admit` waited in all (retries over windows included).
    pub(crate) fn waited_in_all(mut self, waited: Duration) -> Self {
        self.waited = waited;
        self
    }

    /// At least the time since the charges counted, in ms: since the request was sent
    /// (rounded up), less the act wait the server answered (itself rounded up: 1 ms less).
    fn since_ms(&self) -> u64 {
        let elapsed = self.sent_at.elapsed().as_nanos().div_ceil(1_000_000);
        let elapsed = u64::try_from(elapsed).unwrap_or(u64::MAX);
        let wait = u64::try_from(self.act_wait.as_millis()).unwrap_or(u64::MAX);
        elapsed.saturating_sub(wait.saturating_sub(1))
    }

    /// The instant has come: the permit is the caller's.
    pub(crate) fn activate(&mut self) {
        self.stage = Stage::Active;
    }

    /// The decision that admitted the call: one per limit, in the order given.
    #[must_use]
    pub fn decision(&self) -> &AllDecision {
        &self.decision
    }

    /// How long `admit` waited for the reserved instant (or for retries, over windows).
    #[must_use]
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Who admitted the call ([`Source::FailedOpen`]: nothing was counted).
    #[must_use]
    pub fn source(&self) -> Source {
        self.decision.source
    }

    /// The costs charged, one per limit, in the order given.
    pub fn costs(&self) -> impl Iterator<Item = u64> + '_ {
        self.charges.iter().map(|(_, _, cost)| *cost)
    }

    /// Corrects every limit to what the call really cost, `actual[i]` for limit `i`
    /// (`RL.ADJUST key delta policy SINCE ms` where it differs): less gives the
    /// difference back, never more than charging less at the act time would have left
    /// (`SINCE`: a bucket that was full meanwhile lost refill it could not hold), more
    /// charges it (into the bounded debt `RL.ADJUST` documents). One round trip per
    /// limit that changes.
    ///
    /// # Errors
    /// `actual` not of one cost per limit, or a cost above 2^62; when the server is
    /// unavailable, only [`FailurePolicy::Error`] returns the error (fallback adjusts in
    /// memory; the others drop the correction).
    pub async fn settle(mut self, actual: &[u64]) -> Result<()> {
        if actual.len() != self.charges.len() || actual.iter().any(|&cost| cost > MAX_COUNT) {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!(
                    "settle takes {} costs (one per limit), each at most {MAX_COUNT}",
                    self.charges.len()
                ),
            ));
        }
        self.stage = Stage::Done;
        let since_ms = self.since_ms();
        let charges = std::mem::take(&mut self.charges);
        adjust(
            &self.limiter,
            &charges,
            actual,
            since_ms,
            self.decision.source,
        )
        .await
    }

    /// The call was not made: gives every charge back.
    ///
    /// # Errors
    /// As [`settle`](Self::settle).
    pub async fn cancel(self) -> Result<()> {
        let zeros = vec![0; self.charges.len()];
        self.settle(&zeros).await
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Only a reservation whose instant never came is surely unused.
        if self.stage != Stage::Pending || self.charges.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (limiter, charges) = (self.limiter.clone(), std::mem::take(&mut self.charges));
        let source = self.decision.source;
        // Not acted yet: the charges count from a later instant; 0 gives all back.
        runtime.spawn(async move {
            let zeros = vec![0; charges.len()];
            // Best effort: a refund that fails leaves the reservation counted.
            let _ = adjust(&limiter, &charges, &zeros, 0, source).await;
        });
    }
}

/// Moves each limit from its charged cost to `actual`, where the decision counted it.
async fn adjust(
    limiter: &RateLimiter,
    charges: &[Charge],
    actual: &[u64],
    since_ms: u64,
    source: Source,
) -> Result<()> {
    for ((key, policy, cost), &actual) in charges.iter().zip(actual) {
        if actual == *cost {
            continue;
        }
        // Both within 2^62: the difference fits.
        let delta = i64::try_from(i128::from(actual) - i128::from(*cost)).unwrap_or(0);
        let adjustment = Adjustment::from_delta(delta).since(since_ms);
        let in_memory = |limiter: &RateLimiter| {
            limiter
                .shared
                .local
                .adjust(key, policy, adjustment, local::now())
                .map(drop)
        };
        match source {
            Source::Memory | Source::Fallback => in_memory(limiter)?,
            Source::Server => {
                let Some(remote) = limiter.remote() else {
                    continue;
                };
                let slot = limiter.shared.is_cluster.then(|| crate::slot::of(key));
                let cmd = protocol::adjust(key, policy, delta, since_ms);
                match limiter.call(remote, "settle", &cmd, slot, adjusted).await {
                    Ok(()) => {}
                    Err(error) if error.is_backend_failure() => match limiter.failure {
                        FailurePolicy::Error => return Err(error),
                        FailurePolicy::Fallback => in_memory(limiter)?,
                        FailurePolicy::Open | FailurePolicy::Closed => {}
                    },
                    Err(error) => return Err(error),
                }
            }
            // Nothing was counted: nothing to correct.
            Source::FailedOpen | Source::FailedClosed | Source::LocalCache => {}
        }
    }
    Ok(())
}

/// `RL.ADJUST`'s reply: nil (nothing to adjust) or a decision.
fn adjusted(value: &Value) -> Result<()> {
    match value {
        Value::Nil => Ok(()),
        other => protocol::parse_decision(other).map(drop),
    }
}
