//! Reading replies: how they are encoded, numbers through scripts, error texts, field
//! pairs and decision fields, and what a reply said for the key model.

use std::collections::HashMap;

use redis::Value;

use crate::oracle::Failure;

/// How a reply is encoded where it is read.
#[derive(Clone, Copy, Debug)]
pub struct Encoding {
    /// Maps and booleans (RESP3, or a script that called `redis.setresp(3)`), else flat
    /// arrays and integers.
    pub maps: bool,
    /// Read through a script: errors carry a suffix, the server's arity text differs.
    pub script: bool,
}

impl Encoding {
    pub fn plain(maps: bool) -> Self {
        Encoding {
            maps,
            script: false,
        }
    }
}

/// `got == expected`; through a script (`lossy`), as Lua's doubles round them.
#[allow(clippy::cast_precision_loss)]
pub fn same_number(got: i64, expected: u64, lossy: bool) -> bool {
    u64::try_from(got) == Ok(expected) || lossy && got as f64 == expected as f64
}

/// `got <= most`; through a script (`lossy`), as Lua's doubles round them.
#[allow(clippy::cast_precision_loss)]
pub fn at_most(got: i64, most: u64, lossy: bool) -> bool {
    u64::try_from(got).is_ok_and(|n| n <= most) || lossy && got as f64 <= most as f64
}

/// A field saturated at `i64::MAX` (read through a script, Lua turns it into a double of
/// 2^63 and back into `i64::MIN`). Within the documented ranges every number a decision
/// computes is far below it: a saturated field means a range check went missing.
pub fn saturated(fields: &[i64], lossy: bool) -> bool {
    fields
        .iter()
        .any(|&n| n == i64::MAX || lossy && n == i64::MIN)
}

/// What a checked reply said, for the key model.
#[derive(Default)]
pub struct Observed {
    pub error: bool,
    pub allowed: Option<bool>,
    pub nil: bool,
    /// The allowed error the reply was.
    pub failure: Option<Failure>,
}

impl Observed {
    /// A short name of the outcome, for the statistics.
    pub fn outcome(&self) -> String {
        match (&self.failure, self.allowed) {
            (Some(Failure::Argument(name)), _) => format!("ERR {name}"),
            (Some(Failure::Bound(name, _)), _) => format!("ERR {name} at most"),
            // The token and the numbers vary: the kind of error is enough here.
            (Some(Failure::Syntax(text)), _) if text.contains(" near ") => {
                "ERR syntax error near".to_owned()
            }
            (Some(Failure::Syntax(text)), _) if text.ends_with(" given twice") => {
                "ERR syntax error: given twice".to_owned()
            }
            (Some(Failure::Syntax(_)), _) => "ERR syntax error: needs a value".to_owned(),
            (Some(Failure::Exact(text)), _) => {
                let kind = text.split(" must be ").next().unwrap_or(text);
                kind.split(": ").next().unwrap_or(kind).to_owned()
            }
            (Some(failure), _) => format!("{failure:?}"),
            (None, Some(true)) => "allowed".to_owned(),
            (None, Some(false)) => "denied".to_owned(),
            (None, None) if self.nil => "nil".to_owned(),
            (None, None) => "ok".to_owned(),
        }
    }
}

pub const DECISION_FIELDS: [&str; 5] = [
    "allowed",
    "limit",
    "remaining",
    "retry_after_ms",
    "reset_after_ms",
];

/// The text of an error reply.
pub fn error_text(value: &Value) -> Option<String> {
    match value {
        Value::ServerError(error) => Some(match error.details() {
            Some(details) => format!("{} {details}", error.code()),
            None => error.code().to_owned(),
        }),
        _ => None,
    }
}

pub fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

pub fn int_of(value: Option<&Value>, name: &str) -> Result<i64, String> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        other => Err(format!("{name} is not an integer: {other:?}")),
    }
}

/// `allowed` (or any flag) as the encoding writes it: a boolean in maps, else 0/1.
pub fn flag_of(value: Option<&Value>, maps: bool) -> Result<bool, String> {
    match (value, maps) {
        (Some(Value::Boolean(b)), true) => Ok(*b),
        (Some(Value::Int(n @ 0..=1)), false) => Ok(*n == 1),
        (other, _) => Err(format!(
            "expected {}, got {other:?}",
            if maps { "a boolean" } else { "0 or 1" }
        )),
    }
}

/// Field-value pairs of a map (RESP3) or of a flat array (RESP2); a repeated name is an
/// error (a map has no duplicate keys).
pub fn pairs(value: &Value, maps: bool) -> Result<HashMap<String, Value>, String> {
    let list: Vec<(Value, Value)> = match (value, maps) {
        (Value::Map(pairs), true) => pairs.clone(),
        (Value::Array(items), false) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect(),
        _ => {
            let shape = if maps {
                "a map"
            } else {
                "a flat array of pairs"
            };
            return Err(format!("expected {shape}, got {value:?}"));
        }
    };
    let mut fields = HashMap::new();
    for (name, value) in list {
        let name = text_of(&name).ok_or_else(|| format!("field name {name:?}"))?;
        if fields.insert(name.clone(), value).is_some() {
            return Err(format!("field {name} appears twice"));
        }
    }
    Ok(fields)
}

/// The five contract fields of a decision, in order (`allowed` as 0/1): an array of five
/// integers, the same under RESP2 and RESP3 (a map would let positional client code read
/// the key `"allowed"` as a truthy value).
pub fn decision_fields(value: &Value) -> Result<[i64; 5], String> {
    match value {
        Value::Array(items) if items.len() == 5 => {
            let mut out = [0i64; 5];
            for (slot, (item, name)) in out.iter_mut().zip(items.iter().zip(DECISION_FIELDS)) {
                *slot = int_of(Some(item), name)?;
            }
            Ok(out)
        }
        other => Err(format!("expected an array of 5 integers, got {other:?}")),
    }
}

/// The decision fields of a map (status or decision).
pub fn decision_from(fields: &HashMap<String, Value>, maps: bool) -> Result<[i64; 5], String> {
    let allowed = match fields.get("allowed") {
        // RESP2 replies may hold any integer here; check_decision reports it.
        Some(Value::Int(n)) if !maps => *n,
        other => i64::from(flag_of(other, maps).map_err(|e| format!("allowed: {e}"))?),
    };
    let mut out = [allowed, 0, 0, 0, 0];
    for (slot, name) in out.iter_mut().zip(DECISION_FIELDS).skip(1) {
        *slot = int_of(fields.get(name), name)?;
    }
    Ok(out)
}
