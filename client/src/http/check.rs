//! The round trips of one decision. The limits of one caller share a hash tag, so one
//! `RL.ALL` decides them atomically, all or nothing. Limits of several callers (per IP
//! and per user) have several tags: on a single server (or Sentinel), one `RL.ALL` still
//! takes them all; in a Cluster, where one command reaches one slot, they are decided
//! in two pipelined steps, one `RL.ALL` per slot in each:
//!
//! 1. `PEEK` every slot: if any limit refuses, the request is refused and nothing is
//!    counted anywhere (a limit that refuses never drains the others);
//! 2. else count every slot. Only a request racing another between the two steps can
//!    be refused here; then the slots that allowed it were counted, the others not.

use super::rules::NamedLimit;
use crate::{AllDecision, Decision, Policy, RateLimiter};
use futures_util::future::join_all;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The limits of one request and their keys, in the rule's order.
pub(crate) struct Request<'r> {
    pub(crate) keys: &'r [String],
    pub(crate) limits: &'r [NamedLimit],
    pub(crate) cost: u64,
    /// Whether the keys name several callers (several hash tags).
    pub(crate) spread: bool,
    /// Ask without counting (`count_when` rules count after the response).
    pub(crate) peek: bool,
}

impl Request<'_> {
    /// [`decide`](Self::decide), and once more after deleting the caller's limiters of
    /// this rule if one of them was stored by another algorithm: a limit whose
    /// algorithm changed under the same name (a reload or a restart with a new
    /// configuration) starts afresh, as a renamed one does, instead of failing (and
    /// serving unlimited) until the old key expires. `RL.RESET` deletes only limiters:
    /// a key of another Redis type stays, and so does the error.
    pub(crate) async fn decide_afresh(
        &self,
        limiter: &RateLimiter,
        cluster: &AtomicBool,
    ) -> crate::Result<Vec<Decision>> {
        match self.decide(limiter, cluster).await {
            Err(error) if error.is_wrong_type() => {
                // One slot at a time: in a Cluster, RL.RESET's keys share a slot too.
                for key in self.keys {
                    if limiter.reset(&[key]).await.is_err() {
                        return Err(error);
                    }
                }
                tracing::info!(
                    "redlimit: a limit's algorithm changed: the caller's counters of its rule start afresh"
                );
                self.decide(limiter, cluster).await
            }
            result => result,
        }
    }

    async fn decide(
        &self,
        limiter: &RateLimiter,
        cluster: &AtomicBool,
    ) -> crate::Result<Vec<Decision>> {
        if let ([key], [limit]) = (self.keys, self.limits) {
            let decision = if self.peek {
                limiter.peek(key, &limit.policy, self.cost).await?
            } else {
                limiter.check_cost(key, &limit.policy, self.cost).await?
            };
            return Ok(vec![decision]);
        }
        // One RL.ALL for all, unless this limiter is known to be a Cluster and the keys
        // name several callers (then the client refuses it before sending).
        if !(self.spread && cluster.load(Ordering::Relaxed)) {
            let pairs = self.pairs(0..self.keys.len());
            let all = if self.peek {
                limiter.peek_all(&pairs, self.cost).await
            } else {
                limiter.check_all(&pairs, self.cost).await
            };
            match all {
                Ok(all) => return Ok(self.counted(all)),
                Err(error) if self.spread && error.is_cross_slot() => {
                    cluster.store(true, Ordering::Relaxed);
                }
                Err(error) => return Err(error),
            }
        }
        self.decide_by_slot(limiter).await
    }

    /// `(key, policy)` of the limits at `indices`.
    fn pairs(&self, indices: impl Iterator<Item = usize>) -> Vec<(&str, Policy)> {
        indices
            .filter_map(|i| Some((self.keys.get(i)?.as_str(), self.limits.get(i)?.policy)))
            .collect()
    }

    /// The decisions of one all-or-nothing call, with the numbers of what was counted.
    fn counted(&self, all: AllDecision) -> Vec<Decision> {
        let mut decisions = all.decisions;
        if !all.allowed {
            for (decision, limit) in decisions.iter_mut().zip(self.limits) {
                uncount(decision, &limit.policy, self.cost);
            }
        }
        decisions
    }

    /// Peek every slot, then count every slot (see the module's notes).
    async fn decide_by_slot(&self, limiter: &RateLimiter) -> crate::Result<Vec<Decision>> {
        let mut slots: Vec<(u16, Vec<usize>)> = Vec::new();
        for (i, key) in self.keys.iter().enumerate() {
            let slot = crate::slot::of(key.as_bytes());
            match slots.iter_mut().find(|(s, _)| *s == slot) {
                Some((_, indices)) => indices.push(i),
                None => slots.push((slot, vec![i])),
            }
        }
        let by_slot: Vec<Vec<(&str, Policy)>> = slots
            .iter()
            .map(|(_, indices)| self.pairs(indices.iter().copied()))
            .collect();
        let peeked = join_all(
            by_slot
                .iter()
                .map(|pairs| limiter.peek_all(pairs, self.cost)),
        )
        .await
        .into_iter()
        .collect::<crate::Result<Vec<AllDecision>>>()?;
        let refused = peeked.iter().any(|all| !all.allowed);
        let answers = if refused || self.peek {
            peeked
        } else {
            join_all(
                by_slot
                    .iter()
                    .map(|pairs| limiter.check_all(pairs, self.cost)),
            )
            .await
            .into_iter()
            .collect::<crate::Result<Vec<AllDecision>>>()?
        };
        let mut decisions: Vec<Option<Decision>> = vec![None; self.keys.len()];
        for ((_, indices), all) in slots.iter().zip(answers) {
            // Counted only where the second step allowed the slot.
            let counted = all.allowed && !refused;
            for (&i, mut decision) in indices.iter().zip(all.decisions) {
                if !counted {
                    if let Some(limit) = self.limits.get(i) {
                        uncount(&mut decision, &limit.policy, self.cost);
                    }
                }
                if let Some(place) = decisions.get_mut(i) {
                    *place = Some(decision);
                }
            }
        }
        decisions
            .into_iter()
            .map(|d| {
                d.ok_or_else(|| {
                    crate::Error::new(
                        crate::ErrorKind::Protocol,
                        "a slot's reply lacks a decision",
                    )
                })
            })
            .collect()
    }
}

/// A decision that allowed but was not counted (another limit refused, or a peek)
/// reports what it would have left after counting: report what it has. The remaining
/// quota gets the cost back; a limit back to full resets now (`t = 0`); a token bucket
/// is full again `cost` refills sooner. For windows, the reset time of a partly used
/// window stays the counted one, an upper bound.
pub(crate) fn uncount(decision: &mut Decision, policy: &Policy, cost: u64) {
    if !decision.allowed {
        return;
    }
    decision.remaining = decision.remaining.saturating_add(cost).min(decision.limit);
    if decision.remaining >= decision.limit {
        decision.reset_after = Duration::ZERO;
    } else if let Policy::TokenBucket(bucket) = policy {
        let ms =
            u128::from(cost) * u128::from(bucket.refill_ms()) / u128::from(bucket.refill_tokens());
        let refill = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
        decision.reset_after = decision.reset_after.saturating_sub(refill);
    }
}
