//! The `states` property: stored states, valid, mutated and written by hand, read back
//! and called.

use proptest::prelude::*;
use proptest::sample::select;
use redis::Value;
use redlimit_core::Limiter;

use crate::commands::{Call, Command, bytes, decimal, show};
use crate::keyspace::apply;
use crate::oracle::check::check;
use crate::oracle::expect::expected;
use crate::oracle::policies::check_status;
use crate::oracle::replies::{Encoding, int_of, pairs};
use crate::strategies::calls::{LEASE_IDS, pool};
use crate::strategies::limiters::{bounded_state, limiter, mutation};
use crate::target::Target;

/// One `states` case.
#[derive(Clone, Debug)]
pub struct StateCase {
    /// A valid encoding (maybe mutated), or one written by hand at the bounds.
    pub state: Vec<u8>,
    pub key: &'static str,
    pub resp3: bool,
    /// A valid call of each command, made on the stored state.
    follow_ups: Vec<Call>,
}

pub fn state_cases() -> BoxedStrategy<StateCase> {
    let n = || (1u64..=1_000).prop_map(decimal);
    let follow_ups =
        (n(), n(), n(), n(), n(), select(LEASE_IDS.to_vec())).prop_map(|(a, b, c, d, e, id)| {
            let call = |command, args: &[&Vec<u8>]| {
                Call::new(command, args.iter().map(|&arg| arg.clone()).collect())
            };
            let key = Vec::new(); // replaced by the case's key
            let (cost, approx, fixed, one, id) = (
                bytes("COST"),
                bytes("APPROX"),
                bytes("FIXED"),
                decimal(1),
                bytes(id),
            );
            vec![
                call(Command::TokenBucket, &[&key, &a, &b, &c, &cost, &d]),
                call(Command::Throttle, &[&key, &a, &b, &c, &d]),
                call(Command::Fixed, &[&key, &a, &b, &cost, &e]),
                call(Command::Sliding, &[&key, &a, &b]),
                call(Command::Sliding, &[&key, &a, &b, &approx]),
                call(Command::Acquire, &[&key, &a, &b, &id]),
                call(Command::Release, &[&key, &id]),
                call(Command::All, &[&one, &key, &fixed, &a, &e]),
            ]
        });
    let state = prop_oneof![
        5 => (limiter(), mutation()).prop_map(|(limiter, m)| m.apply(limiter.encode())),
        1 => bounded_state(),
    ];
    (state, select(pool()), any::<bool>(), follow_ups)
        .prop_map(|(state, key, resp3, follow_ups)| StateCase {
            state,
            key,
            resp3,
            follow_ups,
        })
        .boxed()
}

impl Target {
    /// Stores a (maybe mutated) state: accepted exactly when it decodes; then RL.STATUS
    /// reports its policy, DUMP/RESTORE copies it, and every command answers on it.
    pub fn state_case(&mut self, case: &StateCase) -> Result<(), String> {
        let state = case.state.clone();
        let key = bytes(case.key);
        let call = Call::new(Command::SetState, vec![key.clone(), state.clone()]);
        let mut keys = self.prepare(std::iter::once(&call))?;
        let encoding = Encoding {
            maps: case.resp3,
            script: false,
        };
        let expect = expected(&call, &keys);
        let reply = self.send(case.resp3, &call.cmd())?;
        let seen = check(&call, &expect, &reply, encoding).map_err(|e| format!("{call:?}: {e}"))?;
        self.tally(&call, &seen);
        apply(&mut keys, &call, &expect, &seen);
        let decoded = Limiter::decode(&state);
        if let (false, Ok(decoded)) = (seen.error, &decoded) {
            self.stored_state(&key, decoded, case.resp3)
                .map_err(|e| format!("after {call:?}: {e}"))?;
        }
        for follow_up in &case.follow_ups {
            let mut call = follow_up.clone();
            match call.command {
                Command::All => call.args[1].clone_from(&key),
                _ => call.args[0].clone_from(&key),
            }
            keys.insert(key.clone(), self.probe(&key)?);
            let expect = expected(&call, &keys);
            let reply = self.send(case.resp3, &call.cmd())?;
            let seen = check(&call, &expect, &reply, encoding)
                .map_err(|e| format!("{call:?} on the state {}: {e}", show(&state)))?;
            apply(&mut keys, &call, &expect, &seen);
        }
        self.finish(&keys)
    }

    /// RL.STATUS reports the stored policy; DUMP/RESTORE gives the same value.
    fn stored_state(&mut self, key: &[u8], stored: &Limiter, resp3: bool) -> Result<(), String> {
        let status = self.query(resp3, &[b"RL.STATUS", key])?;
        if status != Value::Nil {
            check_status(&status, Encoding::plain(resp3), Some(stored.algorithm()))?;
            let fields = pairs(&status, resp3)?;
            for (name, value) in stored.policy_fields() {
                let got = int_of(fields.get(name), name)?;
                if u64::try_from(got) != Ok(value) {
                    return Err(format!(
                        "RL.STATUS: {name} is {got}, the state says {value}"
                    ));
                }
            }
        }
        let dump = self.ok(&[b"DUMP", key])?;
        let Value::BulkString(payload) = &dump else {
            return match dump {
                Value::Nil => Ok(()),
                other => Err(format!("DUMP answered {other:?}")),
            };
        };
        // The same absolute expiry: DEBUG DIGEST-VALUE covers it.
        let expire_at = int_of(Some(&self.ok(&[b"PEXPIRETIME", key])?), "PEXPIRETIME")?.max(0);
        self.ok(&[
            b"RESTORE",
            b"fz:copy",
            &decimal(expire_at),
            payload,
            b"REPLACE",
            b"ABSTTL",
        ])?;
        let copy = self.ok(&[b"DUMP", b"fz:copy"])?;
        let digests = [
            self.ok(&[b"DEBUG", b"DIGEST-VALUE", key])?,
            self.ok(&[b"DEBUG", b"DIGEST-VALUE", b"fz:copy"])?,
        ];
        let copied = self.ok(&[b"COPY", key, b"fz:copy", b"REPLACE"])?;
        let copied_dump = self.ok(&[b"DUMP", b"fz:copy"])?;
        let usage = self.ok(&[b"MEMORY", b"USAGE", key])?;
        self.ok(&[b"DEL", b"fz:copy"])?;
        if copy != dump {
            return Err("RESTORE gave another value".to_owned());
        }
        if digests[0] != digests[1] {
            return Err(format!(
                "DEBUG DIGEST-VALUE differs after RESTORE: {digests:?}"
            ));
        }
        // The key may have expired just before COPY.
        if copied == Value::Int(1) && copied_dump != dump {
            return Err("COPY gave another value".to_owned());
        }
        match usage {
            Value::Int(n) if n > 0 => Ok(()),
            Value::Nil => Ok(()),
            other => Err(format!("MEMORY USAGE answered {other:?}")),
        }
    }
}
