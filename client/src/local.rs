//! Limiters in this process's memory, decided by the very same `redlimit-core`
//! algorithms as the module: the store of the in-memory backend and of the fallback.
//!
//! Bounded: at most `capacity` keys. Idle keys (equal to no key) are dropped first;
//! when every key is live, the ones closest to idle go.

use crate::error::Result;
use redlimit_core::{
    Adjustment, AllOutcome, AllRequest, Concurrency, Decision, Limiter, Policy, Request, Timestamp,
    WrongAlgorithm, decide_each,
};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

const SHARDS: usize = 16;

type Shard = HashMap<Box<[u8]>, Limiter>;

/// Limiter keys in memory, in shards that lock independently.
#[derive(Debug)]
pub struct LocalStore {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

/// The wall clock as the algorithms read it.
pub fn now() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_micros(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX))
}

impl LocalStore {
    /// A store of at most about `capacity` keys (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            hasher: RandomState::new(),
        }
    }

    fn shard_index(&self, key: &[u8]) -> usize {
        // The modulo keeps the index in range.
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A shard is plain data: a panicking holder cannot leave it half-written.
        match self.shards.get(index) {
            Some(shard) => shard.lock().unwrap_or_else(PoisonError::into_inner),
            None => unreachable_shard(),
        }
    }

    /// Decides `request` under `policy` for `key` at `now`.
    pub fn decide(
        &self,
        key: &[u8],
        policy: &Policy,
        request: Request,
        now: Timestamp,
    ) -> Result<Decision> {
        let mut shard = self.lock(self.shard_index(key));
        // A key already stored is updated in place: one lookup, no new key.
        if let Some(slot) = shard.get_mut(key) {
            let stored = (slot.idle_at() > now).then_some(&*slot);
            let outcome = policy.decide(stored, now, request)?;
            if let Some(update) = outcome.update {
                *slot = update;
            }
            return Ok(outcome.decision);
        }
        let outcome = policy.decide(None, now, request)?;
        if let Some(update) = outcome.update {
            self.store(&mut shard, key, update, now);
        }
        Ok(outcome.decision)
    }

    /// Decides `request` against every limit, counting it everywhere or nowhere.
    pub fn decide_all<K: AsRef<[u8]>>(
        &self,
        limits: &[(K, Policy)],
        request: Request,
        now: Timestamp,
    ) -> Result<AllOutcome> {
        let each: Vec<(&[u8], Policy, u64)> = limits
            .iter()
            .map(|(key, policy)| (key.as_ref(), *policy, request.cost))
            .collect();
        let request = AllRequest {
            peek: request.peek,
            max_wait_ms: request.max_wait_ms,
        };
        self.decide_each(&each, request, now)
    }

    /// Decides a request costing each limit its own cost, counting it everywhere or
    /// nowhere (with `max_wait_ms`, a reservation across token buckets).
    pub fn decide_each<K: AsRef<[u8]>>(
        &self,
        limits: &[(K, Policy, u64)],
        request: AllRequest,
        now: Timestamp,
    ) -> Result<AllOutcome> {
        // Lock every shard involved, in index order so that callers never deadlock.
        let mut indexes: Vec<usize> = limits
            .iter()
            .map(|(key, _, _)| self.shard_index(key.as_ref()))
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> =
            indexes.into_iter().map(|i| (i, self.lock(i))).collect();
        let keyed: Vec<(&[u8], Policy, u64)> = limits
            .iter()
            .map(|(key, policy, cost)| (key.as_ref(), *policy, *cost))
            .collect();
        let outcome = decide_each(&keyed, now, request, |_, key| {
            let shard = guard(&mut guards, self.shard_index(key));
            Ok::<_, WrongAlgorithm>(live(shard, key, now).cloned())
        })?;
        for (index, limiter) in &outcome.updates {
            if let Some((key, _, _)) = keyed.get(*index) {
                let shard = guard(&mut guards, self.shard_index(key));
                self.store(shard, key, limiter.clone(), now);
            }
        }
        Ok(outcome)
    }

    /// Adjusts `key` under `policy` by `adjustment` (`RL.ADJUST`): what a request of cost
    /// 1 would get afterwards.
    pub fn adjust(
        &self,
        key: &[u8],
        policy: &Policy,
        adjustment: Adjustment,
        now: Timestamp,
    ) -> Result<Decision> {
        let mut shard = self.lock(self.shard_index(key));
        let stored = live(&shard, key, now);
        let outcome = policy.adjust(stored, now, adjustment)?;
        if let Some(update) = outcome.update {
            self.store(&mut shard, key, update, now);
        }
        Ok(outcome.decision)
    }

    /// Takes or renews the lease `id` on `key`.
    pub fn acquire(
        &self,
        key: &[u8],
        policy: &Concurrency,
        id: &[u8],
        now: Timestamp,
    ) -> Result<Decision> {
        Concurrency::check_lease_id(id)?;
        let mut shard = self.lock(self.shard_index(key));
        let outcome = match live(&shard, key, now) {
            None => policy.acquire(None, now, id, false),
            Some(Limiter::Concurrency(_, leases)) => policy.acquire(Some(leases), now, id, false),
            Some(other) => {
                return Err(WrongAlgorithm {
                    stored: other.algorithm(),
                }
                .into());
            }
        };
        if let Some(leases) = outcome.update {
            let limiter = Limiter::Concurrency(*policy, Box::new(leases));
            self.store(&mut shard, key, limiter, now);
        }
        Ok(outcome.decision)
    }

    /// Releases the lease `id` on `key`; true if it was held.
    pub fn release(&self, key: &[u8], id: &[u8], now: Timestamp) -> Result<bool> {
        let mut shard = self.lock(self.shard_index(key));
        let (policy, (released, left)) = match live(&shard, key, now) {
            None => return Ok(false),
            Some(Limiter::Concurrency(policy, leases)) => (*policy, leases.release(now, id)),
            Some(other) => {
                return Err(WrongAlgorithm {
                    stored: other.algorithm(),
                }
                .into());
            }
        };
        match left {
            Some(left) if left.held().is_empty() => {
                shard.remove(key);
            }
            Some(left) => {
                shard.insert(key.into(), Limiter::Concurrency(policy, Box::new(left)));
            }
            None => {}
        }
        Ok(released)
    }

    /// Deletes `keys`; the number that existed.
    pub fn reset<K: AsRef<[u8]>>(&self, keys: &[K], now: Timestamp) -> u64 {
        keys.iter()
            .map(|key| {
                let key = key.as_ref();
                let mut shard = self.lock(self.shard_index(key));
                let existed = live(&shard, key, now).is_some();
                shard.remove(key);
                u64::from(existed)
            })
            .sum()
    }

    /// Runs `change` on the live limiter at `key` (`None`: absent or idle) and stores the
    /// limiter it returns, if any, with its answer: how operations kept outside this file
    /// (usage counters) change a key under its shard lock.
    pub fn update<T>(
        &self,
        key: &[u8],
        now: Timestamp,
        change: impl FnOnce(Option<&Limiter>) -> Result<(T, Option<Limiter>)>,
    ) -> Result<T> {
        let mut shard = self.lock(self.shard_index(key));
        let (answer, update) = change(live(&shard, key, now))?;
        if let Some(update) = update {
            self.store(&mut shard, key, update, now);
        }
        Ok(answer)
    }

    /// The limiter stored at `key`, if it is not idle.
    pub fn get(&self, key: &[u8], now: Timestamp) -> Option<Limiter> {
        live(&self.lock(self.shard_index(key)), key, now).cloned()
    }

    /// Keys held now (idle ones included until they are swept).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).len()).sum()
    }

    /// Stores `limiter` at `key`, making room first when the shard is full.
    fn store(&self, shard: &mut Shard, key: &[u8], limiter: Limiter, now: Timestamp) {
        if let Some(slot) = shard.get_mut(key) {
            *slot = limiter;
            return;
        }
        if shard.len() >= self.per_shard {
            evict(shard, self.per_shard, now);
        }
        shard.insert(key.into(), limiter);
    }
}

/// The limiter at `key` unless it is idle (equal to no key).
fn live<'s>(shard: &'s Shard, key: &[u8], now: Timestamp) -> Option<&'s Limiter> {
    shard.get(key).filter(|limiter| limiter.idle_at() > now)
}

/// Drops every idle key; if the shard is still over an eighth below `per_shard`, also
/// the live keys closest to idle, so that eviction runs once per many inserts.
fn evict(shard: &mut Shard, per_shard: usize, now: Timestamp) {
    shard.retain(|_, limiter| limiter.idle_at() > now);
    let target = per_shard - per_shard / 8 - 1;
    if shard.len() <= target {
        return;
    }
    let mut by_idle: Vec<(Timestamp, Box<[u8]>)> = shard
        .iter()
        .map(|(key, limiter)| (limiter.idle_at(), key.clone()))
        .collect();
    let excess = shard.len() - target;
    by_idle.select_nth_unstable_by_key(excess - 1, |(idle_at, _)| *idle_at);
    for (_, key) in by_idle.iter().take(excess) {
        shard.remove(key);
    }
}

/// The guard of shard `index` among `guards` (always there: every key's shard is locked).
fn guard<'g, 's>(guards: &'g mut [(usize, MutexGuard<'s, Shard>)], index: usize) -> &'g mut Shard {
    match guards.iter_mut().find(|(i, _)| *i == index) {
        Some((_, guard)) => guard,
        None => unreachable_shard(),
    }
}

#[cold]
fn unreachable_shard() -> ! {
    unreachable!("shard indexes are taken modulo the shard count and locked beforehand")
}

#[cfg(test)]
mod tests {
    use super::*;
    use redlimit_core::{FixedWindow, TokenBucket};

    const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn bucket() -> Policy {
        Policy::TokenBucket(TokenBucket::new(2, 1, 1_000).unwrap())
    }

    #[test]
    fn decides_like_the_core_algorithm() {
        let store = LocalStore::new(100);
        assert!(
            store
                .decide(b"k", &bucket(), Request::new(2), T0)
                .unwrap()
                .allowed
        );
        let denied = store.decide(b"k", &bucket(), Request::new(1), T0).unwrap();
        assert!(!denied.allowed);
        let later = T0.plus_micros(1_000_000);
        assert!(
            store
                .decide(b"k", &bucket(), Request::new(1), later)
                .unwrap()
                .allowed
        );
        let fixed = Policy::Fixed(FixedWindow::new(1, 1_000).unwrap());
        assert!(
            store
                .decide(b"k", &fixed, Request::new(1), later)
                .unwrap_err()
                .is_wrong_type()
        );
    }

    #[test]
    fn memory_stays_bounded_and_idle_keys_go_first() {
        let store = LocalStore::new(1_600);
        let window = Policy::Fixed(FixedWindow::new(5, 60_000).unwrap());
        for i in 0..10_000u32 {
            store
                .decide(&i.to_be_bytes(), &window, Request::new(1), T0)
                .unwrap();
        }
        assert!(store.len() <= 1_600, "{} keys", store.len());
        // A new window: every old key is idle and makes room without evicting live ones.
        let next = T0.plus_micros(60_000_000);
        store
            .decide(b"live", &window, Request::new(5), next)
            .unwrap();
        for i in 0..20u32 {
            store
                .decide(&i.to_be_bytes(), &window, Request::new(1), next)
                .unwrap();
        }
        assert!(
            !store
                .decide(b"live", &window, Request::new(1), next)
                .unwrap()
                .allowed
        );
    }

    #[test]
    fn all_or_nothing_across_shards() {
        let store = LocalStore::new(1_000);
        let one = Policy::Fixed(FixedWindow::new(1, 60_000).unwrap());
        let ten = Policy::Fixed(FixedWindow::new(10, 60_000).unwrap());
        let limits: Vec<(String, Policy)> = (0..20).map(|i| (format!("k{i}"), ten)).collect();
        assert!(
            store
                .decide_all(&limits, Request::new(1), T0)
                .unwrap()
                .allowed
        );
        let mixed = [
            ("a".to_owned(), ten),
            ("b".to_owned(), one),
            ("b".to_owned(), one),
        ];
        assert!(
            !store
                .decide_all(&mixed, Request::new(1), T0)
                .unwrap()
                .allowed
        );
        assert_eq!(store.get(b"a", T0), None, "nothing counted on a denial");
    }

    #[test]
    fn leases_are_taken_and_released() {
        let store = LocalStore::new(100);
        let two = Concurrency::new(2, 10_000).unwrap();
        assert!(store.acquire(b"c", &two, b"a", T0).unwrap().allowed);
        assert!(store.acquire(b"c", &two, b"b", T0).unwrap().allowed);
        assert!(!store.acquire(b"c", &two, b"c", T0).unwrap().allowed);
        assert!(store.release(b"c", b"a", T0).unwrap());
        assert!(!store.release(b"c", b"a", T0).unwrap());
        assert!(store.acquire(b"c", &two, b"c", T0).unwrap().allowed);
        assert_eq!(store.reset(&[b"c"], T0), 1);
    }
}
