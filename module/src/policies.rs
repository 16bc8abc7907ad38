//! Interned policies: a bounded, never-freed, per-process table that gives each policy
//! a key holds a 2-byte id, so a compact value ([`crate::compact`]) carries the id
//! instead of the policy's numbers and is decoded without checking them again.
//!
//! - **Bounded**: at most [`CAPACITY`] policies. When the table is full, new values keep
//!   their policy inline (the stored encoding, as before): nothing is refused.
//! - **Never freed, never changed**: an id, once given, names the same policy until the
//!   process ends. A slot is written once ([`OnceLock`]) before its id is published.
//! - **Readers never lock**: [`get`] is one atomic load; it runs on the main thread and
//!   in fork children (RDB save, AOF rewrite read ids of the values they write out).
//!   The server's `free` callback (possibly on the lazyfree thread) never touches the
//!   table: a value's bytes are its whole allocation.
//! - **Writers lock**: [`intern`] takes a mutex (commands and RDB load run on the main
//!   thread, so it is never contended and never held across a fork).
//!
//! The table is not persisted: RDB, DUMP, AOF and replication carry the stored encoding
//! (version 1) with the policy's numbers, and each process interns what it loads.

use redlimit_core::Policy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The most policies one process interns.
pub const CAPACITY: usize = 4096;

/// The slots, written once each, in id order.
static SLOTS: [OnceLock<Policy>; CAPACITY] = [const { OnceLock::new() }; CAPACITY];
/// How many slots are written (ids below it are valid).
static LEN: AtomicUsize = AtomicUsize::new(0);
/// The id last interned or found (a one-entry cache in front of the index).
static LAST: AtomicU32 = AtomicU32::new(u32::MAX);
/// Policy → id, for [`intern`]'s misses.
static INDEX: Mutex<Option<HashMap<Policy, u16>>> = Mutex::new(None);

/// The policy of `id`, or `None` if no policy has it.
pub fn get(id: u16) -> Option<Policy> {
    let id = usize::from(id);
    if id >= LEN.load(Ordering::Acquire) {
        return None;
    }
    SLOTS.get(id)?.get().copied()
}

/// Whether `id` names `policy` (cheaper than [`intern`] when the id is at hand).
pub fn is(id: u16, policy: &Policy) -> bool {
    get(id).as_ref() == Some(policy)
}

/// The policy last interned or found by [`intern`], if `same` accepts it: a command
/// whose numbers equal a valid policy's needs not check them again.
pub fn last_if(same: impl FnOnce(&Policy) -> bool) -> Option<Policy> {
    let last = u16::try_from(LAST.load(Ordering::Relaxed)).ok()?;
    get(last).filter(same)
}

/// The id of `policy`, interning it if needed; `None` when the table is full.
pub fn intern(policy: &Policy) -> Option<u16> {
    let last = LAST.load(Ordering::Relaxed);
    if let Ok(last) = u16::try_from(last)
        && is(last, policy)
    {
        return Some(last);
    }
    let mut index = INDEX
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let index = index.get_or_insert_with(HashMap::new);
    let id = match index.get(policy) {
        Some(&id) => id,
        None => {
            let len = LEN.load(Ordering::Acquire);
            let id = u16::try_from(len).ok()?;
            SLOTS.get(len)?.set(*policy).ok()?;
            index.insert(*policy, id);
            LEN.store(len + 1, Ordering::Release);
            id
        }
    };
    LAST.store(u32::from(id), Ordering::Relaxed);
    Some(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use redlimit_core::{FixedWindow, TokenBucket};

    #[test]
    fn ids_name_one_policy_for_good() {
        let a = Policy::TokenBucket(TokenBucket::new(7, 3, 1_000).unwrap());
        let b = Policy::Fixed(FixedWindow::new(7, 3_000).unwrap());
        let id_a = intern(&a).unwrap();
        let id_b = intern(&b).unwrap();
        assert_ne!(id_a, id_b);
        assert_eq!(intern(&a), Some(id_a), "found again, behind the last one");
        assert_eq!(get(id_a), Some(a));
        assert_eq!(get(id_b), Some(b));
        assert!(is(id_b, &b) && !is(id_b, &a));
        assert_eq!(get(u16::MAX), None);
        assert_eq!(last_if(|p| *p == a), Some(a));
        assert_eq!(last_if(|p| *p == b), None);
    }

    #[test]
    fn the_table_is_about_160_kib() {
        // docs/security.md states it.
        let bytes = std::mem::size_of_val(&SLOTS);
        assert!((150 * 1024..=170 * 1024).contains(&bytes), "{bytes}");
    }
}
