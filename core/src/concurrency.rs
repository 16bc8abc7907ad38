//! Distributed concurrency limit: at most `limit` leases held at once, each expiring by
//! itself `lease_ms` after it was taken or last renewed.

use crate::decision::{Decision, Outcome, RetryAfter};
use crate::error::{ArgumentError, at_most, duration, positive};
use crate::time::Timestamp;
use core::time::Duration;

/// The most leases one key may hold: with ids at their longest, one call on a full key
/// stays under a millisecond (its time grows with the leases).
pub const MAX_LEASES: u64 = 1_000;
/// The longest lease id, in bytes (a UUID takes 36).
pub const MAX_LEASE_ID_LEN: usize = 256;

/// At most `limit` leases of `lease_ms` each.
///
/// ```
/// use redlimit_core::Concurrency;
/// let policy = Concurrency::new(10, 30_000).unwrap();
/// assert_eq!(policy.limit(), 10);
/// assert!(Concurrency::new(0, 30_000).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Concurrency {
    limit: u64,
    lease_ms: u64,
}

/// One held lease.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    /// When it expires, Unix milliseconds.
    pub expires_ms: u64,
    /// The holder's id (any bytes).
    pub id: Box<[u8]>,
}

/// The leases of a key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Leases {
    held: Vec<Lease>,
}

impl Concurrency {
    /// A policy.
    ///
    /// # Errors
    /// A zero argument, or a `limit` above [`MAX_LEASES`].
    pub fn new(limit: u64, lease_ms: u64) -> Result<Self, ArgumentError> {
        let limit = at_most("limit", positive("limit", limit)?, MAX_LEASES)?;
        let lease_ms = duration("lease_ms", lease_ms)?;
        Ok(Self { limit, lease_ms })
    }

    /// Leases held at most at once.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// How long a lease lasts, in milliseconds.
    #[must_use]
    pub const fn lease_ms(&self) -> u64 {
        self.lease_ms
    }

    /// Checks a lease id.
    ///
    /// # Errors
    /// An id longer than [`MAX_LEASE_ID_LEN`] bytes.
    pub fn check_lease_id(id: &[u8]) -> Result<&[u8], ArgumentError> {
        if id.len() > MAX_LEASE_ID_LEN {
            return Err(ArgumentError::new(
                "lease_id",
                format!("at most {MAX_LEASE_ID_LEN} bytes"),
            ));
        }
        Ok(id)
    }

    /// Takes (or renews) the lease `id` at `now` for `lease_ms`.
    #[must_use]
    pub fn acquire(
        &self,
        previous: Option<&Leases>,
        now: Timestamp,
        id: &[u8],
        peek: bool,
    ) -> Outcome<Leases> {
        let now_ms = now.as_micros() / 1_000;
        let mut leases = previous
            .map(|leases| leases.live(now_ms))
            .unwrap_or_default();
        let expires_ms = self.expiry(now);
        let count = leases.held.len() as u64;
        match leases.held.iter_mut().find(|lease| *lease.id == *id) {
            Some(lease) => lease.expires_ms = lease.expires_ms.max(expires_ms),
            None if count < self.limit => leases.held.push(Lease {
                expires_ms,
                id: id.into(),
            }),
            None => {
                let wait = self.time_until_free(&leases, now_ms);
                let decision = self.decision(false, &leases, now_ms, RetryAfter::After(wait));
                return Outcome {
                    decision,
                    update: None,
                };
            }
        }
        let decision = self.decision(true, &leases, now_ms, RetryAfter::Now);
        Outcome {
            decision,
            update: (!peek).then_some(leases),
        }
    }

    /// What a new holder would get at `now`, without changing anything.
    #[must_use]
    pub fn status(&self, leases: &Leases, now: Timestamp) -> Decision {
        let now_ms = now.as_micros() / 1_000;
        let live = leases.live(now_ms);
        if (live.held.len() as u64) < self.limit {
            let mut after = live;
            after.held.push(Lease {
                expires_ms: self.expiry(now),
                id: Box::default(),
            });
            return self.decision(true, &after, now_ms, RetryAfter::Now);
        }
        let wait = self.time_until_free(&live, now_ms);
        self.decision(false, &live, now_ms, RetryAfter::After(wait))
    }

    /// When a lease taken at `now` expires: `lease_ms` after `now` rounded **up** to the
    /// millisecond, so that a lease never lasts less than `lease_ms`.
    fn expiry(&self, now: Timestamp) -> u64 {
        now.as_micros()
            .div_ceil(1_000)
            .saturating_add(self.lease_ms)
    }

    /// Time until a new holder fits: until enough of the live `leases` have expired to
    /// leave fewer than `limit` (more than one when the limit was lowered below the
    /// count held).
    fn time_until_free(&self, leases: &Leases, now_ms: u64) -> Duration {
        let mut expiries: Vec<u64> = leases.held.iter().map(|lease| lease.expires_ms).collect();
        let must_expire = expiries
            .len()
            .saturating_sub(usize::try_from(self.limit).unwrap_or(usize::MAX));
        let free_at = if expiries.is_empty() {
            now_ms
        } else {
            let index = must_expire.min(expiries.len() - 1);
            *expiries.select_nth_unstable(index).1
        };
        Duration::from_millis(free_at.saturating_sub(now_ms))
    }

    fn decision(
        &self,
        allowed: bool,
        leases: &Leases,
        now_ms: u64,
        retry_after: RetryAfter,
    ) -> Decision {
        let reset_after = Duration::from_millis(leases.last_expiry().saturating_sub(now_ms));
        let remaining = self.limit.saturating_sub(leases.held.len() as u64);
        Decision {
            allowed,
            limit: self.limit,
            remaining,
            retry_after,
            reset_after,
        }
    }

    /// When `leases` equals no key: the last lease expires.
    #[must_use]
    pub fn idle_at(&self, leases: &Leases) -> Timestamp {
        Timestamp::from_millis(leases.last_expiry())
    }
}

impl Leases {
    /// Leases from their parts, checked: ids unique and not too long.
    ///
    /// # Errors
    /// A duplicate or oversized id, or more than [`MAX_LEASES`] leases.
    pub fn from_leases(held: Vec<Lease>) -> Result<Self, &'static str> {
        if held.len() as u64 > MAX_LEASES
            || held.iter().any(|lease| lease.id.len() > MAX_LEASE_ID_LEN)
        {
            return Err("too many or too long leases");
        }
        let mut ids: Vec<&[u8]> = held.iter().map(|lease| &*lease.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|pair| pair.first() == pair.get(1)) {
            return Err("duplicate lease id");
        }
        Ok(Self { held })
    }

    /// The leases, in the order they were first taken.
    #[must_use]
    pub fn held(&self) -> &[Lease] {
        &self.held
    }

    /// Bytes on the heap.
    #[must_use]
    pub fn heap_size(&self) -> usize {
        self.held.capacity() * core::mem::size_of::<Lease>()
            + self.held.iter().map(|lease| lease.id.len()).sum::<usize>()
    }

    /// The leases still live at `now_ms`.
    fn live(&self, now_ms: u64) -> Self {
        Self {
            held: self
                .held
                .iter()
                .filter(|lease| lease.expires_ms > now_ms)
                .cloned()
                .collect(),
        }
    }

    fn last_expiry(&self) -> u64 {
        self.held
            .iter()
            .map(|lease| lease.expires_ms)
            .max()
            .unwrap_or(0)
    }

    /// Releases `id` at `now`: whether it was held, and the leases left (`None` when
    /// nothing changed).
    #[must_use]
    pub fn release(&self, now: Timestamp, id: &[u8]) -> (bool, Option<Self>) {
        let mut live = self.live(now.as_micros() / 1_000);
        let before = live.held.len();
        live.held.retain(|lease| *lease.id != *id);
        let released = live.held.len() < before;
        let changed = live.held.len() < self.held.len();
        (released, changed.then_some(live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at_ms(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn leases_are_limited_renewed_and_expire() {
        let policy = Concurrency::new(2, 1_000).unwrap();
        let a = policy.acquire(None, at_ms(0), b"a", false);
        assert_eq!(a.decision.remaining, 1);
        let leases = a.update.unwrap();
        let b = policy.acquire(Some(&leases), at_ms(100), b"b", false);
        let leases = b.update.unwrap();
        let c = policy.acquire(Some(&leases), at_ms(200), b"c", false);
        assert!(!c.decision.allowed);
        assert_eq!(
            c.decision.retry_after,
            RetryAfter::After(Duration::from_millis(800))
        );
        assert_eq!(c.decision.reset_after, Duration::from_millis(900));
        // Renewing "a" moves its expiry; "c" then waits for "b".
        let leases = policy
            .acquire(Some(&leases), at_ms(500), b"a", false)
            .update
            .unwrap();
        let c = policy.acquire(Some(&leases), at_ms(600), b"c", false);
        assert_eq!(
            c.decision.retry_after,
            RetryAfter::After(Duration::from_millis(500))
        );
        assert!(
            policy
                .acquire(Some(&leases), at_ms(1_100), b"c", false)
                .decision
                .allowed,
            "b expired"
        );
        assert_eq!(policy.idle_at(&leases), at_ms(1_500));
    }

    #[test]
    fn release_frees_a_slot_once() {
        let policy = Concurrency::new(1, 1_000).unwrap();
        let leases = policy.acquire(None, at_ms(0), b"a", false).update.unwrap();
        let (released, left) = leases.release(at_ms(10), b"a");
        assert!(released);
        assert_eq!(left, Some(Leases::default()));
        assert_eq!(leases.release(at_ms(10), b"zzz"), (false, None));
        assert_eq!(
            leases.release(at_ms(1_000), b"a"),
            (false, Some(Leases::default())),
            "expired: not held"
        );
    }

    proptest! {
        #[test]
        fn never_more_than_limit_live_leases(
            limit in 1u64..5,
            lease_ms in 1u64..1_000,
            steps in proptest::collection::vec((0u64..400, 0u8..8, any::<bool>()), 1..120),
        ) {
            let policy = Concurrency::new(limit, lease_ms).unwrap();
            let (mut now, mut leases) = (0u64, Leases::default());
            // The model: id -> expiry.
            let mut model = std::collections::BTreeMap::new();
            for (advance, id, release) in steps {
                now += advance;
                model.retain(|_, expiry: &mut u64| *expiry > now);
                let id = [id];
                if release {
                    let (released, left) = leases.release(at_ms(now), &id);
                    prop_assert_eq!(released, model.remove(&id[0]).is_some());
                    if let Some(left) = left { leases = left; }
                } else {
                    let outcome = policy.acquire(Some(&leases), at_ms(now), &id, false);
                    let allowed = model.contains_key(&id[0]) || (model.len() as u64) < limit;
                    prop_assert_eq!(outcome.decision.allowed, allowed);
                    if allowed {
                        model.insert(id[0], now + lease_ms);
                        leases = outcome.update.unwrap();
                    }
                }
                let live = leases.held().iter().filter(|l| l.expires_ms > now).count();
                prop_assert_eq!(live, model.len());
                prop_assert!(live as u64 <= limit);
            }
        }
    }
}
