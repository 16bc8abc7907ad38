//! All-or-nothing decisions over several limits (`RL.ALL`).

use crate::decision::{Decision, Request};
use crate::error::ArgumentError;
use crate::limiter::{Limiter, Policy, WrongAlgorithm};
use crate::time::Timestamp;
use core::hash::Hash;
use std::collections::HashMap;

/// The most limits one all-or-nothing decision takes (`RL.ALL`'s `numkeys`): plenty for
/// "several limits per request", and a bound on the time of one call.
pub const MAX_ALL_LIMITS: u64 = 32;

/// Up to this many limits, a key named twice is found by comparing keys, not hashing.
const SCAN_LIMIT: usize = 16;

/// The answer to one all-or-nothing request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllOutcome {
    /// Every limit allowed the request, so it was counted against all of them.
    pub allowed: bool,
    /// One decision per limit, in the order the limits were given. When a reservation
    /// (`MAXWAIT`) is allowed, every limit with a cost above 0 answers the same act time
    /// as its `retry_after` (a zero cost answers now).
    pub decisions: Vec<Decision>,
    /// When allowed: the limiters to store, each with the index of the first limit
    /// naming its key, in that order. Empty when denied or when nothing changed.
    pub updates: Vec<(usize, Limiter)>,
}

/// How an all-or-nothing request with a cost per limit is decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllRequest {
    /// Answer without changing anything.
    pub peek: bool,
    /// Reserve: admit when every limit can take its cost within this many milliseconds,
    /// all counted at that one instant (token buckets only; see
    /// [`check_all_max_wait`]). Zero: only now.
    pub max_wait_ms: u64,
}

/// Decides `request` against every `(key, policy)` of `limits` at `now`, counting it
/// everywhere if and only if every limit allows it; the same cost everywhere.
///
/// `load(index, key)` reads a key's stored limiter once (`index`: its first limit); a
/// key named twice sees the state its earlier limit left, as if the request were
/// counted there first.
///
/// ```
/// use redlimit_core::{FixedWindow, Policy, Request, Timestamp, decide_all};
/// let minute = Policy::Fixed(FixedWindow::new(10, 60_000).unwrap());
/// let hour = Policy::Fixed(FixedWindow::new(1, 3_600_000).unwrap());
/// let now = Timestamp::from_millis(1_700_000_000_000);
/// let limits = [("m", minute), ("h", hour)];
/// let load = |_, _: &&str| Ok::<_, redlimit_core::WrongAlgorithm>(None);
/// let first = decide_all(&limits, now, Request::new(1), load).unwrap();
/// assert!(first.allowed);
/// assert_eq!(first.updates.len(), 2);
/// ```
///
/// # Errors
/// Whatever `load` returns, and [`WrongAlgorithm`] (converted) when a key holds a
/// limiter of another algorithm than its policy.
pub fn decide_all<K, E>(
    limits: &[(K, Policy)],
    now: Timestamp,
    request: Request,
    mut load: impl FnMut(usize, &K) -> Result<Option<Limiter>, E>,
) -> Result<AllOutcome, E>
where
    K: Hash + Eq,
    E: From<WrongAlgorithm>,
{
    let charges: Vec<(&K, Policy, u64)> = limits
        .iter()
        .map(|(key, policy)| (key, *policy, request.cost))
        .collect();
    let request = AllRequest {
        peek: request.peek,
        max_wait_ms: request.max_wait_ms,
    };
    decide_each(&charges, now, request, |index, key: &&K| load(index, key))
}

/// Decides one request that costs `cost` at each `(key, policy, cost)` of `limits`, at
/// `now`: counted everywhere if and only if every limit allows its cost (a zero cost
/// only asks that limit). With `max_wait_ms`, a reservation over token buckets: see
/// [`AllRequest::max_wait_ms`] and `docs/commands.md` (`RL.ALL ... MAXWAIT`).
///
/// ```
/// use redlimit_core::{AllRequest, Policy, RetryAfter, Timestamp, TokenBucket, decide_each};
/// let requests = Policy::TokenBucket(TokenBucket::new(2, 2, 60_000).unwrap());
/// let tokens = Policy::TokenBucket(TokenBucket::new(1_000, 1_000, 60_000).unwrap());
/// let now = Timestamp::from_millis(1_700_000_000_000);
/// let call = [("rpm", requests, 1), ("tpm", tokens, 900)];
/// let load = |_, _: &&str| Ok::<_, redlimit_core::WrongAlgorithm>(None);
/// let first = decide_each(&call, now, AllRequest::default(), load).unwrap();
/// assert!(first.allowed);
/// // 900 more tokens: 800 are missing, they come back in 48 s.
/// let stored = first.updates.clone();
/// let load = |index: usize, _: &&str| {
///     Ok::<_, redlimit_core::WrongAlgorithm>(stored.iter().find(|(i, _)| *i == index).map(|(_, l)| l.clone()))
/// };
/// let wait = AllRequest { peek: false, max_wait_ms: 60_000 };
/// let second = decide_each(&call, now, wait, load).unwrap();
/// assert!(second.allowed);
/// assert_eq!(second.decisions[0].retry_after, RetryAfter::After(std::time::Duration::from_secs(48)));
/// ```
///
/// # Errors
/// As [`decide_all`].
pub fn decide_each<K, E>(
    limits: &[(K, Policy, u64)],
    now: Timestamp,
    request: AllRequest,
    load: impl FnMut(usize, &K) -> Result<Option<Limiter>, E>,
) -> Result<AllOutcome, E>
where
    K: Hash + Eq,
    E: From<WrongAlgorithm>,
{
    let reservable = request.max_wait_ms > 0
        && limits
            .iter()
            .all(|(_, policy, _)| matches!(policy, Policy::TokenBucket(_)));
    let mut keys = KeyStates::new(limits, load, reservable);
    if reservable {
        return crate::reserve::reserve(limits, now, request, keys);
    }
    let mut decisions = Vec::with_capacity(limits.len());
    for (index, (key, policy, cost)) in limits.iter().enumerate() {
        let slot = keys.slot(index, key)?;
        let Some((_, state, changed)) = keys.states.get_mut(slot) else {
            continue;
        };
        // A peek answers what the same call would: a key named twice sees the state
        // its earlier limit would have left. The pending states are simply never stored.
        let outcome = policy.decide(state.as_ref(), now, Request::new(*cost))?;
        decisions.push(outcome.decision);
        if let Some(update) = outcome.update {
            *state = Some(update);
            *changed = true;
        }
    }
    Ok(keys.outcome(decisions, request.peek))
}

/// Checks a `MAXWAIT` for an all-or-nothing request: zero takes any policies; above
/// zero every policy must be a token bucket (a window cannot hold a reservation for a
/// later instant exactly, so it is refused rather than approximated), each accepting it.
///
/// # Errors
/// A policy that is not a token bucket (named by its position, from 1), or a `MAXWAIT`
/// a bucket does not take.
///
/// ```
/// use redlimit_core::{FixedWindow, Policy, TokenBucket, check_all_max_wait};
/// let bucket = Policy::TokenBucket(TokenBucket::new(5, 5, 1_000).unwrap());
/// let window = Policy::Fixed(FixedWindow::new(5, 1_000).unwrap());
/// assert_eq!(check_all_max_wait(&[bucket, bucket], 500), Ok(500));
/// assert_eq!(check_all_max_wait(&[bucket, window], 0), Ok(0));
/// assert_eq!(
///     check_all_max_wait(&[bucket, window], 500).unwrap_err().to_string(),
///     "MAXWAIT must be 0 unless every policy is a TOKENBUCKET (policy 2 is FIXED: a window cannot hold a reservation exactly)"
/// );
/// ```
pub fn check_all_max_wait<'a>(
    policies: impl IntoIterator<Item = &'a Policy>,
    max_wait_ms: u64,
) -> Result<u64, ArgumentError> {
    if max_wait_ms == 0 {
        return Ok(0);
    }
    for (index, policy) in policies.into_iter().enumerate() {
        match policy {
            Policy::TokenBucket(bucket) => {
                bucket.check_max_wait(max_wait_ms)?;
            }
            other => {
                let name = match other.algorithm() {
                    crate::Algorithm::Fixed => "FIXED",
                    crate::Algorithm::Sliding => "SLIDING",
                    crate::Algorithm::SlidingApprox => "SLIDING APPROX",
                    _ => "THROTTLE",
                };
                return Err(ArgumentError::new(
                    "MAXWAIT",
                    format!(
                        "0 unless every policy is a TOKENBUCKET (policy {} is {name}: a window \
                         cannot hold a reservation exactly)",
                        index + 1
                    ),
                ));
            }
        }
    }
    Ok(max_wait_ms)
}

/// The state of each distinct key of an all-or-nothing request, in order of first
/// appearance: the index of its first limit, its stored limiter as loaded, its state so
/// far, changed or not. Keys are found by a scan while there are few of them (no
/// hashing, no allocation beyond this list), through a map beyond that.
pub(crate) struct KeyStates<'a, K, L> {
    keys: Vec<&'a K>,
    pub(crate) states: Vec<(usize, Option<Limiter>, bool)>,
    /// The states as loaded, kept only for a reservation (it decides twice).
    loaded: Option<Vec<Option<Limiter>>>,
    by_key: HashMap<&'a K, usize>,
    load: L,
}

impl<'a, K, L, E> KeyStates<'a, K, L>
where
    K: Hash + Eq,
    L: FnMut(usize, &K) -> Result<Option<Limiter>, E>,
{
    fn new(limits: &'a [(K, Policy, u64)], load: L, keep_loaded: bool) -> Self {
        Self {
            keys: limits.iter().map(|(key, _, _)| key).collect(),
            states: Vec::with_capacity(limits.len()),
            loaded: keep_loaded.then(|| Vec::with_capacity(limits.len())),
            by_key: HashMap::new(),
            load,
        }
    }

    /// The slot of limit `index`'s key, loading the key at its first limit.
    pub(crate) fn slot(&mut self, index: usize, key: &'a K) -> Result<usize, E> {
        let many = self.keys.len() > SCAN_LIMIT;
        let seen = if many {
            self.by_key.get(key).copied()
        } else {
            self.states
                .iter()
                .position(|(first, _, _)| self.keys.get(*first).is_some_and(|k| *k == key))
        };
        if let Some(slot) = seen {
            return Ok(slot);
        }
        let stored = (self.load)(index, key)?;
        if let Some(loaded) = &mut self.loaded {
            loaded.push(stored.clone());
        }
        self.states.push((index, stored, false));
        if many {
            self.by_key.insert(key, self.states.len() - 1);
        }
        Ok(self.states.len() - 1)
    }

    /// Every key back to its state as loaded, unchanged.
    pub(crate) fn rewind(&mut self) {
        let Some(loaded) = &self.loaded else {
            return;
        };
        for ((_, state, changed), loaded) in self.states.iter_mut().zip(loaded) {
            state.clone_from(loaded);
            *changed = false;
        }
    }

    /// A denied outcome with these decisions: nothing to store.
    pub(crate) fn outcome_denied(self, decisions: Vec<Decision>) -> AllOutcome {
        AllOutcome {
            allowed: false,
            decisions,
            updates: Vec::new(),
        }
    }

    /// The outcome: the changed states to store when every limit allowed and this is no peek.
    pub(crate) fn outcome(self, decisions: Vec<Decision>, peek: bool) -> AllOutcome {
        let allowed = decisions.iter().all(|decision| decision.allowed);
        let updates: Vec<(usize, Limiter)> = if allowed && !peek {
            self.states
                .into_iter()
                .filter_map(|(index, state, changed)| state.filter(|_| changed).map(|s| (index, s)))
                .collect()
        } else {
            Vec::new()
        };
        AllOutcome {
            allowed,
            decisions,
            updates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FixedWindow, TokenBucket};

    const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn fixed(limit: u64) -> Policy {
        Policy::Fixed(FixedWindow::new(limit, 60_000).unwrap())
    }

    fn none(_: usize, _: &&str) -> Result<Option<Limiter>, WrongAlgorithm> {
        Ok(None)
    }

    #[test]
    fn one_denial_counts_nothing_anywhere() {
        let outcome = decide_all(
            &[("a", fixed(5)), ("b", fixed(3))],
            NOW,
            Request::new(4),
            none,
        )
        .unwrap();
        assert!(!outcome.allowed);
        assert_eq!(
            outcome
                .decisions
                .iter()
                .map(|d| d.allowed)
                .collect::<Vec<_>>(),
            [true, false]
        );
        assert!(outcome.updates.is_empty());
    }

    #[test]
    fn a_key_named_twice_sees_its_pending_state() {
        let outcome = decide_all(
            &[("a", fixed(5)), ("a", fixed(5))],
            NOW,
            Request::new(3),
            none,
        )
        .unwrap();
        assert!(!outcome.allowed, "3 + 3 > 5 on the same key");
        let outcome = decide_all(
            &[("a", fixed(6)), ("a", fixed(6))],
            NOW,
            Request::new(3),
            none,
        )
        .unwrap();
        assert!(outcome.allowed);
        assert_eq!(outcome.updates.len(), 1);
        assert_eq!(outcome.decisions[1].remaining, 0);
    }

    #[test]
    fn updates_follow_first_appearance_and_skip_peeks() {
        let limits = [("b", fixed(5)), ("a", fixed(5)), ("b", fixed(5))];
        let outcome = decide_all(&limits, NOW, Request::new(1), none).unwrap();
        let order: Vec<usize> = outcome.updates.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [0, 1]);
        let peek = Request {
            peek: true,
            ..Request::new(1)
        };
        assert!(
            decide_all(&limits, NOW, peek, none)
                .unwrap()
                .updates
                .is_empty()
        );
    }

    #[test]
    fn many_limits_find_repeated_keys_as_few_do() {
        let keys = ["a", "b", "c"];
        for count in [SCAN_LIMIT, SCAN_LIMIT + 1, 3 * SCAN_LIMIT] {
            let limits: Vec<(&str, Policy)> =
                (0..count).map(|i| (keys[i % 3], fixed(100))).collect();
            let outcome = decide_all(&limits, NOW, Request::new(1), none).unwrap();
            assert!(outcome.allowed);
            let order: Vec<usize> = outcome.updates.iter().map(|(i, _)| *i).collect();
            assert_eq!(order, [0, 1, 2], "{count} limits");
            let last = outcome.decisions.last().unwrap();
            assert_eq!(
                last.remaining,
                100 - count.div_ceil(3) as u64,
                "{count} limits"
            );
        }
    }

    #[test]
    fn wrong_algorithm_is_an_error() {
        let bucket = Policy::TokenBucket(TokenBucket::new(5, 1, 1_000).unwrap());
        let stored = fixed(5).decide(None, NOW, Request::new(1)).unwrap().update;
        let load = |_, _: &&str| Ok::<_, WrongAlgorithm>(stored.clone());
        assert!(decide_all(&[("a", bucket)], NOW, Request::new(1), load).is_err());
    }
}
