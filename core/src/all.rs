//! All-or-nothing decisions over several limits (`RL.ALL`).

use crate::decision::{Decision, Request};
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
    /// One decision per limit, in the order the limits were given.
    pub decisions: Vec<Decision>,
    /// When allowed: the limiters to store, each with the index of the first limit
    /// naming its key, in that order. Empty when denied or when nothing changed.
    pub updates: Vec<(usize, Limiter)>,
}

/// Decides `request` against every `(key, policy)` of `limits` at `now`, counting it
/// everywhere if and only if every limit allows it.
///
/// `load(index, key)` reads a key's stored limiter once (`index`: its first limit); a key named twice sees the state its
/// earlier limit left, as if the request were counted there first.
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
    // Per distinct key, in order of first appearance: the index of its first limit, its
    // state so far, changed or not. Keys are found by a scan while there are few of them
    // (no hashing, no allocation beyond this list), through a map beyond that.
    let mut states: Vec<(usize, Option<Limiter>, bool)> = Vec::with_capacity(limits.len());
    let mut by_key: HashMap<&K, usize> = HashMap::new();
    let mut decisions = Vec::with_capacity(limits.len());
    // A peek answers what the same call would: a key named twice sees the state its
    // earlier limit would have left. The pending states are simply never stored.
    let counted = Request {
        peek: false,
        ..request
    };
    for (index, (key, policy)) in limits.iter().enumerate() {
        let seen = if limits.len() <= SCAN_LIMIT {
            states
                .iter()
                .position(|(first, _, _)| limits.get(*first).is_some_and(|(k, _)| k == key))
        } else {
            by_key.get(key).copied()
        };
        let slot = match seen {
            Some(slot) => slot,
            None => {
                states.push((index, load(index, key)?, false));
                if limits.len() > SCAN_LIMIT {
                    by_key.insert(key, states.len() - 1);
                }
                states.len() - 1
            }
        };
        let Some((_, state, changed)) = states.get_mut(slot) else {
            continue;
        };
        let outcome = policy.decide(state.as_ref(), now, counted)?;
        decisions.push(outcome.decision);
        if let Some(update) = outcome.update {
            *state = Some(update);
            *changed = true;
        }
    }
    let allowed = decisions.iter().all(|decision| decision.allowed);
    let updates: Vec<(usize, Limiter)> = if allowed && !request.is_read_only() {
        states
            .into_iter()
            .filter_map(|(index, state, changed)| state.filter(|_| changed).map(|s| (index, s)))
            .collect()
    } else {
        Vec::new()
    };
    Ok(AllOutcome {
        allowed,
        decisions,
        updates,
    })
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
