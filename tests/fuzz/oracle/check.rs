//! Checking replies: decisions, redis-cell's throttle replies, RL.ALL, and any reply
//! against what the oracle expects.

use redis::Value;
use redlimit_core::Algorithm;

use crate::commands::Call;
use crate::keyspace::KeyState;
use crate::oracle::policies::check_status;
use crate::oracle::replies::{
    Encoding, Observed, at_most, decision_fields, error_text, flag_of, same_number, saturated,
};
use crate::oracle::{Expect, Rule, Success};

/// Checks a contract decision (`[allowed, limit, remaining, retry_ms, reset_ms]`) against
/// `rule` and returns `allowed`.
pub fn check_decision(fields: [i64; 5], rule: &Rule, lossy: bool) -> Result<bool, String> {
    let [allowed, limit, remaining, retry, reset] = fields;
    let fail = |what: &str| Err(format!("{what}: {fields:?}"));
    if saturated(&fields, lossy) {
        return fail("a field is saturated at i64::MAX");
    }
    if !(0..=1).contains(&allowed) {
        return fail("allowed is not 0/1");
    }
    if !same_number(limit, rule.limit, lossy) {
        return fail(&format!("limit is not {}", rule.limit));
    }
    if remaining < 0 || !at_most(remaining, rule.most_remaining, lossy) {
        return fail("remaining is not within 0..=limit");
    }
    if retry < -1 || reset < 0 {
        return fail("retry_after_ms < -1 or reset_after_ms < 0");
    }
    let allowed = allowed == 1;
    if allowed && rule.max_wait == 0 && retry != 0 {
        return fail("allowed without MAXWAIT but retry_after_ms is not 0");
    }
    if rule.never && (allowed || retry != -1) {
        return fail("a cost above what the policy can ever grant is not denied with -1");
    }
    if !allowed && !rule.never && retry < 1 {
        return fail("denied but retry_after_ms < 1 although the cost can succeed later");
    }
    // Once the limiter is fully available again, a request that can ever succeed does.
    if retry > reset {
        return fail("retry_after_ms is later than reset_after_ms");
    }
    Ok(allowed)
}

/// Checks redis-cell's reply `[limited, limit, remaining, retry_s, reset_s]`; returns allowed.
fn check_throttle(fields: [i64; 5], rule: &Rule, lossy: bool) -> Result<bool, String> {
    let [limited, limit, remaining, retry, reset] = fields;
    let fail = |what: &str| Err(format!("{what}: {fields:?}"));
    if saturated(&fields, lossy) {
        return fail("a field is saturated at i64::MAX");
    }
    if !(0..=1).contains(&limited) {
        return fail("limited is not 0/1");
    }
    if !same_number(limit, rule.limit, lossy) {
        return fail(&format!("limit is not {}", rule.limit));
    }
    if remaining < 0 || !at_most(remaining, rule.most_remaining, lossy) {
        return fail("remaining is not within 0..=limit");
    }
    if reset < 0 || retry < -1 {
        return fail("retry_after < -1 or reset_after < 0");
    }
    let allowed = limited == 0;
    if allowed && retry != -1 {
        return fail("allowed but retry_after is not -1");
    }
    if rule.never && (allowed || retry != -1) {
        return fail("a quantity above the limit is not limited with -1");
    }
    Ok(allowed)
}

/// Checks the reply of one limiting command under `rule`; returns allowed.
pub fn check_limit_reply(reply: &Value, rule: &Rule, encoding: Encoding) -> Result<bool, String> {
    let lossy = encoding.script;
    match rule.algorithm {
        Algorithm::Throttle => check_throttle(decision_fields(reply)?, rule, lossy),
        _ => check_decision(decision_fields(reply)?, rule, lossy),
    }
}

/// Checks an `RL.ALL` reply: the overall `allowed` as the integer 1/0, then each key's
/// decision, under RESP2 and RESP3 alike; returns the overall `allowed`.
fn check_all(reply: &Value, rules: &[Rule], encoding: Encoding) -> Result<bool, String> {
    let Value::Array(items) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    if items.len() != rules.len() + 1 {
        return Err(format!(
            "expected {} elements, got {reply:?}",
            rules.len() + 1
        ));
    }
    let allowed = flag_of(items.first(), false).map_err(|e| format!("allowed: {e}"))?;
    let mut all = true;
    for (item, rule) in items[1..].iter().zip(rules) {
        all &= check_decision(decision_fields(item)?, rule, encoding.script)?;
    }
    if allowed != all {
        return Err(format!(
            "allowed is {allowed} but the keys' decisions say {all}: {reply:?}"
        ));
    }
    Ok(allowed)
}

/// Checks `reply` to `call` against `expect`.
pub fn check(
    call: &Call,
    expect: &Expect,
    reply: &Value,
    encoding: Encoding,
) -> Result<Observed, String> {
    if let Some(disagreement) = &expect.disagreement {
        return Err(format!("{disagreement} (the module answered {reply:?})"));
    }
    if let Some(text) = error_text(reply) {
        if text.contains("internal error") {
            return Err(format!("a caught panic or failed server call: {text:?}"));
        }
        if !text.starts_with("ERR ") && !text.starts_with("WRONGTYPE ") {
            return Err(format!(
                "an error that is neither ERR nor WRONGTYPE: {text:?}"
            ));
        }
        if let Some(failure) = expect
            .failures
            .iter()
            .find(|f| f.matches(&text, call.command, encoding.script))
        {
            return Ok(Observed {
                error: true,
                failure: Some(failure.clone()),
                ..Observed::default()
            });
        }
        return Err(format!(
            "got the error {text:?}; allowed: {:?}{}",
            expect.failures,
            if expect.success.is_some() {
                " or a success"
            } else {
                ""
            }
        ));
    }
    let Some(success) = &expect.success else {
        return Err(format!(
            "got {reply:?}, expected one of the errors {:?}",
            expect.failures
        ));
    };
    let allowed = |allowed| {
        Ok(Observed {
            allowed: Some(allowed),
            ..Observed::default()
        })
    };
    match success {
        Success::Decision(rule) => allowed(check_limit_reply(reply, rule, encoding)?),
        Success::All(rules) => allowed(check_all(reply, rules, encoding)?),
        Success::Status(state) => {
            if *reply == Value::Nil {
                return match state {
                    KeyState::Missing
                    | KeyState::Limiter {
                        may_vanish: true, ..
                    } => Ok(Observed {
                        nil: true,
                        ..Observed::default()
                    }),
                    _ => Err(format!("nil for a key holding {state:?}")),
                };
            }
            let KeyState::Limiter { algorithm, .. } = state else {
                return Err(format!("{reply:?} for a key holding {state:?}"));
            };
            check_status(reply, encoding, Some(*algorithm))?;
            Ok(Observed::default())
        }
        Success::Count { min, max } => match reply {
            Value::Int(n) if (*min..=*max).contains(n) => Ok(Observed::default()),
            other => Err(format!(
                "expected a count within {min}..={max}, got {other:?}"
            )),
        },
        Success::Released { held } => match reply {
            Value::Int(0) => Ok(Observed::default()),
            Value::Int(1) if *held => Ok(Observed::default()),
            other => Err(format!("expected 0 or 1 (held: {held}), got {other:?}")),
        },
        Success::Stored(_) => match reply {
            Value::Okay => Ok(Observed::default()),
            Value::SimpleString(s) if s == "OK" => Ok(Observed::default()),
            other => Err(format!("expected OK, got {other:?}")),
        },
    }
}
