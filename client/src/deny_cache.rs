//! The local cache of denied keys: after the server answers "denied, retry after X",
//! the same key and policy is answered here until X passes, sparing the server.
//!
//! Exact: an entry lasts from the moment the request was *sent* plus X. The server
//! decided after that moment, so the true retry time is never earlier, and a request
//! of the same or a larger cost is denied by the server until then as well. Smaller
//! costs, other policies and peeks with reservations always go to the server.

use crate::decision::{Decision, Source};
use redlimit_core::{Policy, ceil_millis};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
struct Entry {
    policy: Policy,
    /// The smallest cost the server denied; larger ones are denied too.
    cost: u64,
    /// The server's answer and when the request was sent.
    decision: Decision,
    sent_at: Instant,
    /// Sent plus the server's retry time: the earliest the key may allow `cost`.
    until: Instant,
}

/// Denied keys, bounded to `capacity` entries.
#[derive(Debug)]
pub struct DenyCache {
    entries: Mutex<HashMap<Box<[u8]>, Entry>>,
    capacity: usize,
}

impl DenyCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<Box<[u8]>, Entry>> {
        // Plain data: valid whatever a panicking holder left.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached denial for `cost` under `policy` at `key`, if it still holds at `now`.
    pub fn get(&self, key: &[u8], policy: &Policy, cost: u64, now: Instant) -> Option<Decision> {
        let mut entries = self.entries();
        let entry = *entries.get(key)?;
        if now >= entry.until {
            entries.remove(key);
            return None;
        }
        if entry.policy != *policy || cost < entry.cost {
            return None;
        }
        let elapsed = now.saturating_duration_since(entry.sent_at);
        // Whole milliseconds rounded up, as every other source answers.
        let millis = |d: Duration| Duration::from_millis(ceil_millis(d));
        Some(Decision {
            retry_after: Some(millis(entry.until - now)),
            reset_after: millis(entry.decision.reset_after.saturating_sub(elapsed)),
            source: Source::LocalCache,
            ..entry.decision
        })
    }

    /// Remembers the server's `decision` for a request of `cost` sent at `sent_at`, if it
    /// is a denial with a retry time.
    pub fn remember(
        &self,
        key: &[u8],
        policy: &Policy,
        cost: u64,
        decision: &Decision,
        sent_at: Instant,
    ) {
        let Some(wait) = decision.retry_after.filter(|wait| !wait.is_zero()) else {
            return;
        };
        if decision.allowed || cost == 0 {
            return;
        }
        let entry = Entry {
            policy: *policy,
            cost,
            decision: *decision,
            sent_at,
            until: sent_at + wait,
        };
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            let now = Instant::now();
            entries.retain(|_, entry| entry.until > now);
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(key.into(), entry);
    }

    /// Forgets `key` (it was reset, or the server allowed it).
    pub fn forget(&self, key: &[u8]) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redlimit_core::FixedWindow;

    fn denied(wait_ms: u64) -> Decision {
        Decision {
            allowed: false,
            limit: 5,
            remaining: 0,
            retry_after: Some(Duration::from_millis(wait_ms)),
            reset_after: Duration::from_millis(wait_ms),
            source: Source::Server,
        }
    }

    #[test]
    fn answers_until_the_retry_time_for_the_same_or_larger_cost() {
        let cache = DenyCache::new(10);
        let policy = Policy::Fixed(FixedWindow::new(5, 1_000).unwrap());
        let sent = Instant::now();
        cache.remember(b"k", &policy, 2, &denied(100), sent);
        let soon = sent + Duration::from_millis(40);
        let hit = cache.get(b"k", &policy, 2, soon).unwrap();
        assert_eq!(hit.source, Source::LocalCache);
        assert_eq!(hit.retry_after, Some(Duration::from_millis(60)));
        assert!(cache.get(b"k", &policy, 3, soon).is_some());
        assert!(
            cache.get(b"k", &policy, 1, soon).is_none(),
            "a smaller cost may fit"
        );
        let other = Policy::Fixed(FixedWindow::new(50, 1_000).unwrap());
        assert!(
            cache.get(b"k", &other, 2, soon).is_none(),
            "another policy asks the server"
        );
        assert!(
            cache
                .get(b"k", &policy, 2, sent + Duration::from_millis(100))
                .is_none()
        );
    }

    #[test]
    fn stays_bounded() {
        let cache = DenyCache::new(3);
        let policy = Policy::Fixed(FixedWindow::new(5, 1_000).unwrap());
        let sent = Instant::now();
        for i in 0..10u8 {
            cache.remember(&[i], &policy, 1, &denied(60_000), sent);
        }
        assert_eq!(cache.entries().len(), 3);
    }
}
