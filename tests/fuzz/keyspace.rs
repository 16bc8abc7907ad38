//! The key model: what the fuzzer knows each key holds, and how a checked reply changes it.

use std::collections::HashMap;

use redlimit_core::Algorithm;

use crate::commands::{Call, show};
use crate::oracle::replies::Observed;
use crate::oracle::{Expect, Success};

/// What the fuzzer knows a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Missing,
    /// A value of another type (never expires, never changed by `RL.*`).
    Other,
    /// A limiter; `may_vanish` when it may expire (become missing) at any moment.
    Limiter {
        algorithm: Algorithm,
        may_vanish: bool,
    },
}

pub type Keyspace = HashMap<Vec<u8>, KeyState>;

pub fn state_of(keys: &Keyspace, key: &[u8]) -> KeyState {
    *keys
        .get(key)
        .unwrap_or_else(|| panic!("key {} was not probed", show(key)))
}

/// Follows a checked reply in the key model.
pub fn apply(keys: &mut Keyspace, call: &Call, expect: &Expect, seen: &Observed) {
    if seen.error {
        return;
    }
    // A limiter that may have expired and did not answer WRONGTYPE had expired.
    let mut answered = |key: &Vec<u8>, algorithm: Algorithm| {
        if matches!(keys.get(key), Some(KeyState::Limiter { algorithm: held, .. }) if *held != algorithm)
        {
            keys.insert(key.clone(), KeyState::Missing);
        }
    };
    let written = |algorithm| KeyState::Limiter {
        algorithm,
        may_vanish: true,
    };
    match &expect.success {
        Some(Success::Decision(rule)) => {
            let key = &call.args[0];
            answered(key, rule.algorithm);
            if seen.allowed == Some(true) && rule.writes {
                keys.insert(key.clone(), written(rule.algorithm));
            }
        }
        Some(Success::All(rules)) => {
            let names = &call.args[1..=rules.len()];
            for (key, rule) in names.iter().zip(rules) {
                answered(key, rule.algorithm);
            }
            for (key, rule) in names.iter().zip(rules) {
                if seen.allowed == Some(true) && rule.writes {
                    keys.insert(key.clone(), written(rule.algorithm));
                }
            }
        }
        Some(Success::Released { .. }) => {
            // Releasing (or pruning) the last lease deletes the key.
            let key = &call.args[0];
            answered(key, Algorithm::Concurrency);
            if keys.get(key) != Some(&KeyState::Missing) {
                keys.insert(key.clone(), written(Algorithm::Concurrency));
            }
        }
        Some(Success::Status(_)) if seen.nil => {
            keys.insert(call.args[0].clone(), KeyState::Missing);
        }
        Some(Success::Count { .. }) => {
            for key in &call.args {
                keys.insert(key.clone(), KeyState::Missing);
            }
        }
        Some(Success::Stored(algorithm)) => {
            keys.insert(call.args[0].clone(), written(*algorithm));
        }
        _ => {}
    }
}
