//! The `invariants` property: what must always hold under valid traffic.

use std::collections::HashMap;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use redis::{Cmd, Value};
use redlimit_core::{Algorithm, TokenBucket};

use crate::commands::{bytes, decimal, show};
use crate::oracle::Rule;
use crate::oracle::check::check_limit_reply;
use crate::oracle::expect::bucket_never;
use crate::oracle::policies::check_status;
use crate::oracle::replies::{Encoding, decision_fields, decision_from, int_of, pairs};
use crate::settings::{MAX_OFFSET_MS, MIN_BACKWARD_MS};
use crate::strategies::calls::LEASE_IDS;
use crate::target::Target;

/// The limiting commands, as families of keys with their own policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Bucket,
    Throttle,
    Fixed,
    Sliding,
    Approx,
    Leases,
}

const FAMILIES: [Family; 6] = [
    Family::Bucket,
    Family::Throttle,
    Family::Fixed,
    Family::Sliding,
    Family::Approx,
    Family::Leases,
];

impl Family {
    pub fn key(self, index: usize) -> String {
        format!("inv:{self:?}:{index}")
    }

    /// Small policies, so that calls get denied; throttle intervals are whole microseconds.
    fn policy(self) -> BoxedStrategy<[u64; 3]> {
        match self {
            Family::Bucket => (1u64..=6, 1u64..=3, 1u64..=5_000)
                .prop_map(|(c, r, ms)| [c, r, ms])
                .boxed(),
            Family::Throttle => (0u64..=4, select(vec![1u64, 2, 4, 5, 8, 10]), 1u64..=30)
                .prop_map(|(b, c, p)| [b, c, p])
                .boxed(),
            Family::Leases => (1u64..=3, 1u64..=5_000)
                .prop_map(|(l, ms)| [l, ms, 0])
                .boxed(),
            _ => (1u64..=6, 1u64..=5_000)
                .prop_map(|(l, ms)| [l, ms, 0])
                .boxed(),
        }
    }

    /// The command for a request of `cost` (a quantity for throttles, ignored by leases).
    pub fn args(self, key: &str, p: [u64; 3], op: &LimitOp) -> Vec<Vec<u8>> {
        let mut args = match self {
            Family::Bucket => vec![
                bytes("RL.TOKENBUCKET"),
                bytes(key),
                decimal(p[0]),
                decimal(p[1]),
                decimal(p[2]),
            ],
            Family::Throttle => {
                let quantity = decimal(op.cost);
                return vec![
                    bytes("RL.THROTTLE"),
                    bytes(key),
                    decimal(p[0]),
                    decimal(p[1]),
                    decimal(p[2]),
                    quantity,
                ];
            }
            Family::Leases => {
                let id = bytes(LEASE_IDS[op.lease % LEASE_IDS.len()]);
                return vec![
                    bytes("RL.ACQUIRE"),
                    bytes(key),
                    decimal(p[0]),
                    decimal(p[1]),
                    id,
                ];
            }
            Family::Fixed => vec![bytes("RL.FIXED"), bytes(key), decimal(p[0]), decimal(p[1])],
            Family::Sliding | Family::Approx => {
                vec![
                    bytes("RL.SLIDING"),
                    bytes(key),
                    decimal(p[0]),
                    decimal(p[1]),
                ]
            }
        };
        args.extend([bytes("COST"), decimal(op.cost)]);
        if op.peek {
            args.push(bytes("PEEK"));
        }
        if self == Family::Approx {
            args.push(bytes("APPROX"));
        }
        if let (Family::Bucket, Some(ms)) = (self, op.max_wait) {
            args.extend([bytes("MAXWAIT"), decimal(ms)]);
        }
        args
    }

    fn rule(self, p: [u64; 3], op: &LimitOp) -> Rule {
        match self {
            Family::Bucket => {
                let policy = TokenBucket::new(p[0], p[1], p[2]).expect("a valid bucket");
                let max_wait = op.max_wait.unwrap_or(0);
                Rule {
                    algorithm: Algorithm::TokenBucket,
                    limit: p[0],
                    never: bucket_never(&policy, op.cost, max_wait),
                    max_wait,
                    writes: !op.peek && op.cost > 0,
                    most_remaining: p[0],
                }
            }
            Family::Throttle => Rule {
                algorithm: Algorithm::Throttle,
                limit: p[0] + 1,
                never: op.cost > p[0] + 1,
                max_wait: 0,
                writes: op.cost > 0,
                most_remaining: p[0] + 1,
            },
            Family::Leases => Rule::simple(Algorithm::Concurrency, p[0], 1, false),
            Family::Fixed => Rule::simple(Algorithm::Fixed, p[0], op.cost, op.peek),
            Family::Sliding => Rule::simple(Algorithm::Sliding, p[0], op.cost, op.peek),
            Family::Approx => Rule::simple(Algorithm::SlidingApprox, p[0], op.cost, op.peek),
        }
    }

    /// Whether the command takes PEEK.
    pub fn peeks(self) -> bool {
        !matches!(self, Family::Throttle | Family::Leases)
    }
}

/// One valid limiting call.
#[derive(Clone, Debug)]
struct LimitOp {
    family: Family,
    pub key: usize,
    pub policy: usize,
    pub cost: u64,
    pub peek: bool,
    pub max_wait: Option<u64>,
    lease: usize,
    pub resp3: bool,
}

/// One step of valid traffic.
#[derive(Clone, Debug)]
enum Op {
    Limit(LimitOp),
    Forward(u64),
    Back(u64),
}

/// Valid traffic on two keys of each family, each family with two policies.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Per family (in `FAMILIES` order), two policies.
    pub policies: Vec<Vec<[u64; 3]>>,
    ops: Vec<Op>,
}

pub fn scenarios() -> BoxedStrategy<Scenario> {
    let limit = (
        select(FAMILIES.to_vec()),
        0..2usize,
        0..2usize,
        0u64..=7,
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.2, 0u64..=5_000),
        0..LEASE_IDS.len(),
        any::<bool>(),
    )
        .prop_map(
            |(family, key, policy, cost, peek, max_wait, lease, resp3)| {
                Op::Limit(LimitOp {
                    family,
                    key,
                    policy,
                    cost,
                    peek: peek && family.peeks(),
                    max_wait,
                    lease,
                    resp3,
                })
            },
        );
    let op = prop_oneof![
        10 => limit,
        1 => prop_oneof![1u64..=2_000, 2_000u64..=100_000_000].prop_map(Op::Forward),
        1 => (10_000u64..=100_000_000).prop_map(Op::Back),
    ];
    let policies: Vec<_> = FAMILIES.iter().map(|f| vec(f.policy(), 2)).collect();
    (policies, vec(op, 1..=40))
        .prop_map(|(policies, ops)| Scenario { policies, ops })
        .boxed()
}

/// A key's value and absolute expiry, to show a call changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    pub dump: Value,
    expire_at_ms: i64,
}

/// What one valid call answered.
struct Seen {
    pub allowed: bool,
    /// It was allowed and counted (changed the state).
    pub wrote: bool,
    /// Its decision fields (redis-cell's for throttles).
    pub fields: [i64; 5],
}

/// The last state-changing decision on a key: the offset it ran at and what remained.
#[derive(Clone, Copy, Debug)]
struct LastWrite {
    pub offset: i64,
    pub remaining: i64,
}

impl Target {
    fn snapshot(&mut self, key: &[u8]) -> Result<Snapshot, String> {
        let dump = self.ok(&[b"DUMP", key])?;
        let expire_at_ms = int_of(Some(&self.ok(&[b"PEXPIRETIME", key])?), "PEXPIRETIME")?;
        Ok(Snapshot { dump, expire_at_ms })
    }

    /// `RL.STATUS key` as its five decision fields, `None` when there is no key.
    fn status_decision(&mut self, key: &[u8]) -> Result<Option<[i64; 5]>, String> {
        let status = self.ok(&[b"RL.STATUS", key])?;
        if status == Value::Nil {
            return Ok(None);
        }
        check_status(&status, Encoding::plain(false), None)
            .map_err(|e| format!("RL.STATUS {}: {e}", show(key)))?;
        decision_from(&pairs(&status, false)?, false).map(Some)
    }

    pub fn scenario(&mut self, scenario: &Scenario) -> Result<(), String> {
        let keys: Vec<String> = FAMILIES.iter().flat_map(|f| [f.key(0), f.key(1)]).collect();
        for key in &keys {
            self.ok(&[b"DEL", key.as_bytes()])?;
        }
        let mut last_writes: HashMap<String, LastWrite> = HashMap::new();
        for (i, op) in scenario.ops.iter().enumerate() {
            let context = |e: String| format!("op {i}, {op:?}: {e}");
            match op {
                Op::Limit(limit) => {
                    let family = limit.family;
                    let index = FAMILIES.iter().position(|f| *f == family).unwrap_or(0);
                    let policy = scenario.policies[index][limit.policy];
                    let key = family.key(limit.key);
                    let args = family.args(&key, policy, limit);
                    let rule = family.rule(policy, limit);
                    let peekable = family.peeks() && !limit.peek;
                    let seen = self
                        .observe(&key, &args, &rule, peekable, limit.resp3)
                        .map_err(context)?;
                    if seen.wrote {
                        let write = LastWrite {
                            offset: self.offset,
                            remaining: seen.fields[2],
                        };
                        last_writes.insert(key.clone(), write);
                    }
                    // Also (above all) where the state is ahead of a clock moved back: the
                    // waits then include the wait for the clock.
                    let [_, _, _, retry, reset] = seen.fields;
                    if family.peeks() && !seen.allowed && retry > 0 {
                        let mut peek = LimitOp {
                            peek: true,
                            ..limit.clone()
                        };
                        peek.resp3 = false;
                        let args = family.args(&key, policy, &peek);
                        let denied_at = self.offset;
                        self.retry_after(&args, retry).map_err(context)?;
                        let fully = rule.limit.saturating_sub(limit.cost);
                        self.reset_after(&args, denied_at, reset, fully)
                            .map_err(context)?;
                    }
                }
                Op::Forward(ms) => {
                    let ms = i64::try_from(*ms).unwrap_or(MAX_OFFSET_MS);
                    self.move_clock((self.offset + ms).min(MAX_OFFSET_MS))
                        .map_err(context)?;
                }
                Op::Back(ms) => self.clock_back(&keys, *ms, &last_writes).map_err(context)?,
            }
        }
        Ok(())
    }

    /// Runs one valid limiting call and checks it changes nothing unless it was allowed
    /// and counted. Returns `remaining` when it changed the state.
    fn observe(
        &mut self,
        key: &str,
        args: &[Vec<u8>],
        rule: &Rule,
        peekable: bool,
        resp3: bool,
    ) -> Result<Seen, String> {
        let mut cmd = Cmd::new();
        for arg in args {
            cmd.arg(&arg[..]);
        }
        let shown = args.iter().map(|a| show(a)).collect::<Vec<_>>().join(" ");
        self.watch(&[b"WATCH", key.as_bytes()])?;
        let before = self.snapshot(key.as_bytes())?;
        // Where time is frozen for a transaction: STATUS, the call as a PEEK, the call,
        // STATUS, all at one instant.
        let peekable = peekable && self.freezes_time();
        let (reply, status_before, peeked, status_after) = if self.freezes_time() {
            self.query(resp3, &[b"MULTI"])?;
            self.query(resp3, &[b"RL.STATUS", key.as_bytes()])?;
            if peekable {
                let mut peek = cmd.clone();
                peek.arg("PEEK");
                self.send(resp3, &peek)?;
            }
            self.send(resp3, &cmd)?;
            self.query(resp3, &[b"RL.STATUS", key.as_bytes()])?;
            let exec = self.query(resp3, &[b"EXEC"])?;
            let Value::Array(mut replies) = exec else {
                return Err(format!("EXEC answered {exec:?}"));
            };
            let after = replies.pop();
            let reply = replies.pop().unwrap_or(Value::Nil);
            let peeked = if peekable { replies.pop() } else { None };
            (reply, replies.pop(), peeked, after)
        } else {
            (self.send(resp3, &cmd)?, None, None, None)
        };
        let after = self.snapshot(key.as_bytes())?;
        self.watch(&[b"MULTI"])?;
        self.watch(&[b"PING"])?;
        let watched = self.watch(&[b"EXEC"])?;
        let allowed = check_limit_reply(&reply, rule, Encoding::plain(resp3))
            .map_err(|e| format!("{shown}: {e}"))?;
        if let Some(peeked) = peeked
            && peeked != reply
        {
            return Err(format!(
                "{shown}: as a PEEK it answered {peeked:?}, then {reply:?}"
            ));
        }
        for status in [&status_before, &status_after].into_iter().flatten() {
            if *status != Value::Nil {
                check_status(status, Encoding::plain(resp3), Some(rule.algorithm))
                    .map_err(|e| format!("{shown}: {e}"))?;
            }
        }
        if allowed && rule.writes {
            if watched != Value::Nil {
                return Err(format!(
                    "{shown}: a counted call did not abort a WATCH on its key: EXEC answered {watched:?}"
                ));
            }
            return Ok(Seen {
                allowed,
                wrote: true,
                fields: decision_fields(&reply)?,
            });
        }
        let why = if allowed {
            "a read-only call"
        } else {
            "a denied call"
        };
        let now_ms = i64::try_from(self.server_micros()? / 1_000).unwrap_or(i64::MAX);
        let expired = after.dump == Value::Nil && (0..=now_ms).contains(&before.expire_at_ms);
        if watched == Value::Nil && !expired {
            return Err(format!("{shown}: {why} aborted a WATCH on its key"));
        }
        if status_before != status_after {
            return Err(format!(
                "{shown}: {why} changed RL.STATUS at one instant: {status_before:?} -> {status_after:?}"
            ));
        }
        if before != after && !expired {
            return Err(format!(
                "{shown}: {why} changed the key: {before:?} -> {after:?}"
            ));
        }
        Ok(Seen {
            allowed,
            wrote: false,
            fields: decision_fields(&reply)?,
        })
    }

    /// After a denial with `retry_after_ms`, moves the clock that far (plus the 1 ms the
    /// contract leaves open) and checks that the same request (`args`, a PEEK) is allowed.
    fn retry_after(&mut self, args: &[Vec<u8>], retry_ms: i64) -> Result<(), String> {
        let to = self.offset.saturating_add(retry_ms).saturating_add(1);
        if to > MAX_OFFSET_MS {
            return Ok(());
        }
        self.move_clock(to)?;
        let mut cmd = Cmd::new();
        for arg in args {
            cmd.arg(&arg[..]);
        }
        let reply = self.send(false, &cmd)?;
        let fields = decision_fields(&reply)?;
        if fields[0] != 1 {
            let shown = args.iter().map(|a| show(a)).collect::<Vec<_>>().join(" ");
            return Err(format!(
                "denied with retry_after_ms {retry_ms}, yet {shown} is still denied {} ms later: {fields:?}",
                retry_ms + 1
            ));
        }
        Ok(())
    }

    /// After a denial at `denied_at` with `reset_after_ms`, moves the clock that far past it
    /// (plus 1 ms) and checks that the same request (`args`, a PEEK) finds the limiter fully
    /// available: allowed, with `remaining` `fully`.
    fn reset_after(
        &mut self,
        args: &[Vec<u8>],
        denied_at: i64,
        reset_ms: i64,
        fully: u64,
    ) -> Result<(), String> {
        let to = denied_at.saturating_add(reset_ms).saturating_add(1);
        if to > MAX_OFFSET_MS || to < self.offset {
            return Ok(());
        }
        self.move_clock(to)?;
        let mut cmd = Cmd::new();
        for arg in args {
            cmd.arg(&arg[..]);
        }
        let reply = self.send(false, &cmd)?;
        let fields = decision_fields(&reply)?;
        if fields[0] != 1 || u64::try_from(fields[2]) != Ok(fully) {
            let shown = args.iter().map(|a| show(a)).collect::<Vec<_>>().join(" ");
            return Err(format!(
                "denied with reset_after_ms {reset_ms}, yet {} ms later {shown} finds the limiter \
                 not fully available (expected allowed with {fully} remaining): {fields:?}",
                reset_ms + 1
            ));
        }
        Ok(())
    }

    /// Moves the clock back by `ms` and checks that no limiter grants more than before the
    /// move, nor more than its last decision left when the clock is now before it.
    fn clock_back(
        &mut self,
        keys: &[String],
        ms: u64,
        last_writes: &HashMap<String, LastWrite>,
    ) -> Result<(), String> {
        let mut before = Vec::new();
        for key in keys {
            before.push(self.status_decision(key.as_bytes())?);
        }
        let from = self.offset;
        let to = from
            .saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
            .max(0);
        self.move_clock(to)?;
        if from - to < MIN_BACKWARD_MS {
            return Ok(());
        }
        for (key, before) in keys.iter().zip(before) {
            let after = self.status_decision(key.as_bytes())?;
            let (Some(before), Some(after)) = (before, after) else {
                continue;
            };
            if after[0] > before[0] || after[2] > before[2] {
                return Err(format!(
                    "{key}: moving the clock back {from} -> {to} ms granted more: RL.STATUS {before:?} -> {after:?}"
                ));
            }
            if let Some(last) = last_writes.get(key)
                && to + MIN_BACKWARD_MS < last.offset
                && after[2] > last.remaining
            {
                return Err(format!(
                    "{key}: with the clock back before its last decision (offset {} -> {to}), \
                     RL.STATUS says {} remain where the decision left {}",
                    last.offset, after[2], last.remaining
                ));
            }
        }
        Ok(())
    }
}
