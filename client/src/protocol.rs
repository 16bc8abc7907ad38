//! The `RL.*` commands this crate sends and the replies it reads, RESP2 and RESP3 alike.

use crate::decision::{AllDecision, Decision, Source, Status, StoredPolicy};
use crate::error::{Error, ErrorKind, Result};
use redis::{Cmd, Value};
use redlimit_core::{
    AllRequest, Concurrency, FixedWindow, Policy, Request, SlidingCounter, SlidingWindow, Throttle,
    TokenBucket, UsageShape,
};
use std::time::Duration;

/// Room for a number argument (`u64::MAX` has 20 digits).
const NUMBER: usize = 20;

/// The command `name`, with room for `args` more arguments of `bytes` bytes in all:
/// written once, never grown.
fn command(name: &str, args: usize, bytes: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(args + 1, name.len() + bytes);
    cmd.arg(name);
    cmd
}

/// Room for the options of [`options`] and `MAXWAIT`: arguments, bytes.
const OPTIONS: (usize, usize) = (5, 4 + NUMBER + 4 + 7 + NUMBER);

/// The command deciding `request` under `policy` for `key`.
pub fn decide(key: &[u8], policy: &Policy, request: Request) -> Result<Cmd> {
    let (more_args, more_bytes) = OPTIONS;
    let sized = |name, args| {
        command(
            name,
            args + more_args,
            key.len() + args * NUMBER + more_bytes,
        )
    };
    let mut cmd;
    match policy {
        Policy::Throttle(p) => {
            if request.peek && request.cost > 0 {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    "peek is not available for a throttle policy (RL.THROTTLE has no PEEK); \
                     a cost of 0 reads its state",
                ));
            }
            cmd = sized("RL.THROTTLE", 5);
            cmd.arg(key)
                .arg(p.max_burst())
                .arg(p.count())
                .arg(p.period_s())
                .arg(request.cost);
            return Ok(cmd);
        }
        Policy::TokenBucket(p) => {
            cmd = sized("RL.TOKENBUCKET", 4);
            cmd.arg(key)
                .arg(p.capacity())
                .arg(p.refill_tokens())
                .arg(p.refill_ms());
        }
        Policy::Fixed(p) => {
            cmd = sized("RL.FIXED", 3);
            cmd.arg(key).arg(p.limit()).arg(p.window_ms());
        }
        Policy::Sliding(p) => {
            cmd = sized("RL.SLIDING", 3);
            cmd.arg(key).arg(p.limit()).arg(p.window_ms());
        }
        Policy::SlidingApprox(p) => {
            cmd = sized("RL.SLIDING", 4);
            cmd.arg(key).arg(p.limit()).arg(p.window_ms()).arg("APPROX");
        }
    }
    options(&mut cmd, request);
    if request.max_wait_ms > 0 {
        cmd.arg("MAXWAIT").arg(request.max_wait_ms);
    }
    Ok(cmd)
}

/// `COST n` (unless 1) and `PEEK`.
fn options(cmd: &mut Cmd, request: Request) {
    if request.cost != 1 {
        cmd.arg("COST").arg(request.cost);
    }
    if request.peek {
        cmd.arg("PEEK");
    }
}

/// `RL.ALL` over `limits`.
pub fn all<K: AsRef<[u8]>>(limits: &[(K, Policy)], request: Request) -> Result<Cmd> {
    let mut cmd = all_command(limits.iter().map(|(key, _)| key.as_ref().len()));
    cmd.arg(limits.len());
    for (key, _) in limits {
        cmd.arg(key.as_ref());
    }
    for (_, policy) in limits {
        inline_policy(&mut cmd, policy)?;
    }
    options(&mut cmd, request);
    Ok(cmd)
}

/// `RL.ALL` over `limits`, each with its own cost (`COSTS`), `PEEK` and `MAXWAIT`.
pub fn all_each<K: AsRef<[u8]>>(limits: &[(K, Policy, u64)], request: AllRequest) -> Result<Cmd> {
    let mut cmd = all_command(limits.iter().map(|(key, _, _)| key.as_ref().len() + NUMBER));
    cmd.arg(limits.len());
    for (key, _, _) in limits {
        cmd.arg(key.as_ref());
    }
    for (_, policy, _) in limits {
        inline_policy(&mut cmd, policy)?;
    }
    cmd.arg("COSTS");
    for (_, _, cost) in limits {
        cmd.arg(*cost);
    }
    if request.peek {
        cmd.arg("PEEK");
    }
    if request.max_wait_ms > 0 {
        cmd.arg("MAXWAIT").arg(request.max_wait_ms);
    }
    Ok(cmd)
}

/// `RL.ALL`, with room for keys of these lengths, their policies and the options.
fn all_command(keys: impl ExactSizeIterator<Item = usize>) -> Cmd {
    let count = keys.len();
    let key_bytes: usize = keys.sum();
    // Per limit: its key, its inline policy (a name and up to 4 arguments), a cost.
    let (more_args, more_bytes) = OPTIONS;
    command(
        "RL.ALL",
        1 + count * 7 + 1 + more_args,
        NUMBER + key_bytes + count * (11 + 4 * NUMBER) + 5 + more_bytes,
    )
}

/// `RL.ADJUST key delta policy SINCE ms`: `delta` units back (negative) or more
/// (positive), of a charge made `since_ms` ago.
pub fn adjust(key: &[u8], policy: &Policy, delta: i64, since_ms: u64) -> Cmd {
    let mut cmd = redis::cmd("RL.ADJUST");
    cmd.arg(key).arg(delta);
    if let Policy::Throttle(p) = policy {
        cmd.arg("THROTTLE")
            .arg(p.max_burst())
            .arg(p.count())
            .arg(p.period_s());
    } else {
        // Every other policy is written inline as RL.ALL takes it.
        let _ = inline_policy(&mut cmd, policy);
    }
    if delta < 0 {
        cmd.arg("SINCE").arg(since_ms);
    }
    cmd
}

/// A policy as `RL.ALL` takes it: `TOKENBUCKET c r ms` | `FIXED l w` | `SLIDING l w [APPROX]`.
fn inline_policy(cmd: &mut Cmd, policy: &Policy) -> Result<()> {
    match policy {
        Policy::TokenBucket(p) => cmd
            .arg("TOKENBUCKET")
            .arg(p.capacity())
            .arg(p.refill_tokens())
            .arg(p.refill_ms()),
        Policy::Fixed(p) => cmd.arg("FIXED").arg(p.limit()).arg(p.window_ms()),
        Policy::Sliding(p) => cmd.arg("SLIDING").arg(p.limit()).arg(p.window_ms()),
        Policy::SlidingApprox(p) => cmd
            .arg("SLIDING")
            .arg(p.limit())
            .arg(p.window_ms())
            .arg("APPROX"),
        Policy::Throttle(_) => return Err(throttle_in_all()),
    };
    Ok(())
}

fn throttle_in_all() -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        "an all-or-nothing check takes token bucket, sliding and fixed policies, not throttle",
    )
}

/// Refuses what [`all`] refuses without writing the command: a throttle policy.
pub fn check_all_policies<'p>(mut policies: impl Iterator<Item = &'p Policy>) -> Result<()> {
    if policies.any(|policy| matches!(policy, Policy::Throttle(_))) {
        return Err(throttle_in_all());
    }
    Ok(())
}

/// `RL.ACQUIRE key limit lease_ms lease_id`.
pub fn acquire(key: &[u8], policy: &Concurrency, lease_id: &[u8]) -> Cmd {
    let mut cmd = redis::cmd("RL.ACQUIRE");
    cmd.arg(key)
        .arg(policy.limit())
        .arg(policy.lease_ms())
        .arg(lease_id);
    cmd
}

/// `RL.RELEASE key lease_id`.
pub fn release(key: &[u8], lease_id: &[u8]) -> Cmd {
    let mut cmd = redis::cmd("RL.RELEASE");
    cmd.arg(key).arg(lease_id);
    cmd
}

/// `RL.RESET key [key ...]`.
pub fn reset<K: AsRef<[u8]>>(keys: &[K]) -> Cmd {
    let mut cmd = redis::cmd("RL.RESET");
    for key in keys {
        cmd.arg(key.as_ref());
    }
    cmd
}

/// `RL.STATUS key`.
pub fn status(key: &[u8]) -> Cmd {
    let mut cmd = redis::cmd("RL.STATUS");
    cmd.arg(key);
    cmd
}

fn unexpected(what: &str, value: &Value) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("expected {what}, the server sent {value:?}"),
    )
}

/// A reply without its RESP3 attributes (metadata a server may attach to any reply).
fn plain(value: &Value) -> &Value {
    match value {
        Value::Attribute { data, .. } => plain(data),
        other => other,
    }
}

/// An integer reply (RESP3 booleans read as 0/1).
pub fn integer(value: &Value) -> Result<i64> {
    match plain(value) {
        Value::Int(n) => Ok(*n),
        Value::Boolean(b) => Ok(i64::from(*b)),
        _ => Err(unexpected("an integer", value)),
    }
}

/// A 1/0 reply (`RL.RELEASE`); anything else is an error, never read as yes or no.
pub fn boolean(value: &Value) -> Result<bool> {
    match integer(value)? {
        1 => Ok(true),
        0 => Ok(false),
        _ => Err(unexpected("1 or 0", value)),
    }
}

/// A count reply (`RL.RESET`).
pub fn count(value: &Value) -> Result<u64> {
    unsigned(value)
}

/// `allowed`: exactly 1 (allowed) or 0 (denied). Anything else is an error: a reply
/// this crate misreads must never admit a request.
fn allowed(value: &Value) -> Result<bool> {
    boolean(value).map_err(|_| unexpected("allowed as 1 or 0", value))
}

fn unsigned(value: &Value) -> Result<u64> {
    u64::try_from(integer(value)?).map_err(|_| unexpected("a non-negative integer", value))
}

fn millis(value: &Value) -> Result<Duration> {
    unsigned(value).map(Duration::from_millis)
}

/// `-1`: never; otherwise a wait, made a duration by `unit`.
fn retry_after(value: &Value, unit: fn(u64) -> Duration) -> Result<Option<Duration>> {
    match integer(value)? {
        -1 => Ok(None),
        _ => unsigned(value).map(|n| Some(unit(n))),
    }
}

/// The elements of an array reply.
fn array<'v>(value: &'v Value, what: &str) -> Result<&'v [Value]> {
    match plain(value) {
        Value::Array(items) | Value::Set(items) => Ok(items),
        _ => Err(unexpected(what, value)),
    }
}

/// Field/value pairs of a RESP3 map or a RESP2 flat array.
pub(crate) fn pairs(value: &Value) -> Result<Vec<(String, &Value)>> {
    let text = |name: &Value| match name {
        Value::BulkString(bytes) => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Ok(s.clone()),
        _ => Err(unexpected("a field name", name)),
    };
    match plain(value) {
        Value::Map(map) => map
            .iter()
            .map(|(name, value)| Ok((text(name)?, value)))
            .collect(),
        Value::Array(items) if items.len() % 2 == 0 => items
            .chunks_exact(2)
            .map(|pair| match pair {
                [name, value] => Ok((text(name)?, value)),
                _ => Err(unexpected("field/value pairs", value)),
            })
            .collect(),
        _ => Err(unexpected("field/value pairs", value)),
    }
}

fn field<'v>(pairs: &[(String, &'v Value)], name: &str) -> Result<&'v Value> {
    pairs
        .iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| *value)
        .ok_or_else(|| Error::new(ErrorKind::Protocol, format!("the reply has no `{name}`")))
}

/// A decision reply: an array of five integers, under RESP2 and RESP3 alike (the
/// contract). The map a RESP3 connection got from modules before that rule is read by
/// field name (never by position), so it is read right too; any other shape is an
/// error ([`ErrorKind::Protocol`]), which the failure policy answers.
pub fn parse_decision(value: &Value) -> Result<Decision> {
    let five = match plain(value) {
        Value::Array(items) => match items.as_slice() {
            [a, l, r, t, s] => [a, l, r, t, s],
            _ => return Err(unexpected("a decision of five integers", value)),
        },
        Value::Map(_) => {
            let pairs = pairs(value)?;
            let get = |name| field(&pairs, name);
            [
                get("allowed")?,
                get("limit")?,
                get("remaining")?,
                get("retry_after_ms")?,
                get("reset_after_ms")?,
            ]
        }
        _ => return Err(unexpected("a decision of five integers", value)),
    };
    let [is_allowed, limit, remaining, retry, reset] = five;
    Ok(Decision {
        allowed: allowed(is_allowed)?,
        limit: unsigned(limit)?,
        remaining: unsigned(remaining)?,
        retry_after: retry_after(retry, Duration::from_millis)?,
        reset_after: millis(reset)?,
        source: Source::Server,
    })
}

/// redis-cell's reply `[limited, limit, remaining, retry_after_s, reset_after_s]`.
pub fn parse_throttle(value: &Value) -> Result<Decision> {
    let [limited, limit, remaining, retry, reset] = array(value, "a throttle reply")? else {
        return Err(unexpected("a throttle reply of five integers", value));
    };
    // `limited`: 0 allowed, 1 limited; anything else is unreadable, never allowed.
    let allowed = !boolean(limited).map_err(|_| unexpected("limited as 0 or 1", value))?;
    Ok(Decision {
        allowed,
        limit: unsigned(limit)?,
        remaining: unsigned(remaining)?,
        retry_after: if allowed {
            Some(Duration::ZERO)
        } else {
            retry_after(retry, Duration::from_secs)?
        },
        reset_after: Duration::from_secs(unsigned(reset)?),
        source: Source::Server,
    })
}

/// `RL.ALL`'s reply: the overall answer, then one decision per key.
pub fn parse_all(value: &Value, count: usize) -> Result<AllDecision> {
    let items = array(value, "an all-or-nothing reply")?;
    let (overall, decisions) = items
        .split_first()
        .filter(|(_, rest)| rest.len() == count)
        .ok_or_else(|| unexpected("an all-or-nothing reply", value))?;
    let decisions: Vec<Decision> = decisions
        .iter()
        .map(parse_decision)
        .collect::<Result<_>>()?;
    let overall = allowed(overall)?;
    // All or nothing: an overall yes with a denied limit is not a reply of RL.ALL.
    if overall && decisions.iter().any(|d| !d.allowed) {
        return Err(unexpected("an all-or-nothing reply", value));
    }
    Ok(AllDecision {
        allowed: overall,
        decisions,
        source: Source::Server,
    })
}

/// `RL.STATUS`'s reply: nil, or the policy fields and a decision.
pub fn parse_status(value: &Value) -> Result<Option<Status>> {
    if matches!(plain(value), Value::Nil) {
        return Ok(None);
    }
    let pairs = pairs(value)?;
    let number = |name| field(&pairs, name).and_then(unsigned);
    let algorithm = match field(&pairs, "algorithm")? {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => return Err(unexpected("an algorithm name", other)),
    };
    let policy = match algorithm.as_str() {
        "tokenbucket" => StoredPolicy::Rate(Policy::TokenBucket(TokenBucket::new(
            number("capacity")?,
            number("refill_tokens")?,
            number("refill_ms")?,
        )?)),
        "throttle" => StoredPolicy::Rate(Policy::Throttle(Throttle::new(
            number("max_burst")?,
            number("count_per_period")?,
            number("period")?,
        )?)),
        "fixed" => StoredPolicy::Rate(Policy::Fixed(FixedWindow::new(
            number("limit")?,
            number("window_ms")?,
        )?)),
        "sliding" => StoredPolicy::Rate(Policy::Sliding(SlidingWindow::new(
            number("limit")?,
            number("window_ms")?,
        )?)),
        "sliding-approx" => StoredPolicy::Rate(Policy::SlidingApprox(SlidingCounter::new(
            number("limit")?,
            number("window_ms")?,
        )?)),
        "concurrency" => {
            StoredPolicy::Concurrency(Concurrency::new(number("limit")?, number("lease_ms")?)?)
        }
        "usage" => StoredPolicy::Usage(UsageShape::new(number("bucket_ms")?, number("buckets")?)?),
        other => {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!("unknown algorithm `{other}`"),
            ));
        }
    };
    let decision = Decision {
        allowed: allowed(field(&pairs, "allowed")?)?,
        limit: number("limit")?,
        remaining: number("remaining")?,
        retry_after: retry_after(field(&pairs, "retry_after_ms")?, Duration::from_millis)?,
        reset_after: Duration::from_millis(number("reset_after_ms")?),
        source: Source::Server,
    };
    Ok(Some(Status { policy, decision }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(values: &[i64]) -> Value {
        Value::Array(values.iter().map(|&n| Value::Int(n)).collect())
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn decisions_read_the_same_from_resp2_and_resp3() {
        let resp2 = parse_decision(&ints(&[0, 5, 0, 1_000, 5_000])).unwrap();
        let resp3 = parse_decision(&Value::Map(vec![
            (bulk("allowed"), Value::Boolean(false)),
            (bulk("limit"), Value::Int(5)),
            (bulk("remaining"), Value::Int(0)),
            (bulk("retry_after_ms"), Value::Int(1_000)),
            (bulk("reset_after_ms"), Value::Int(5_000)),
        ]))
        .unwrap();
        assert_eq!(resp2, resp3);
        assert_eq!(resp2.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(
            parse_decision(&ints(&[0, 5, 0, -1, 0]))
                .unwrap()
                .retry_after,
            None
        );
    }

    #[test]
    fn malformed_replies_are_protocol_errors() {
        for value in [
            ints(&[1, 2]),
            ints(&[1, 2, -3, 4, 5]),
            bulk("OK"),
            Value::Nil,
        ] {
            assert_eq!(
                parse_decision(&value).unwrap_err().kind(),
                ErrorKind::Protocol
            );
        }
        assert!(parse_all(&ints(&[1]), 1).is_err());
    }

    #[test]
    fn decisions_are_arrays_under_resp3_too_and_attributes_are_ignored() {
        let array = ints(&[1, 5, 4, 0, 200]);
        let with_attributes = Value::Attribute {
            data: Box::new(array.clone()),
            attributes: vec![(bulk("ttl"), Value::Int(3))],
        };
        assert_eq!(
            parse_decision(&with_attributes).unwrap(),
            parse_decision(&array).unwrap()
        );
        let all = Value::Array(vec![
            Value::Int(0),
            ints(&[1, 5, 4, 0, 200]),
            ints(&[0, 3, 0, 900, 900]),
        ]);
        let all = parse_all(&all, 2).unwrap();
        assert!(!all.allowed);
        assert_eq!(
            all.decisions.iter().map(|d| d.allowed).collect::<Vec<_>>(),
            [true, false]
        );
    }

    #[test]
    fn unknown_reply_shapes_are_protocol_errors_never_allowed() {
        // A RESP3 map flattened by a client, read positionally: "allowed" first.
        let flattened = Value::Array(vec![
            bulk("allowed"),
            Value::Int(1),
            bulk("limit"),
            Value::Int(5),
            bulk("remaining"),
            Value::Int(4),
            bulk("retry_after_ms"),
            Value::Int(0),
            bulk("reset_after_ms"),
            Value::Int(200),
        ]);
        let named_first = Value::Array(vec![
            bulk("allowed"),
            Value::Int(5),
            Value::Int(4),
            Value::Int(0),
            Value::Int(200),
        ]);
        let map_without_remaining = Value::Map(vec![
            (bulk("allowed"), Value::Int(1)),
            (bulk("limit"), Value::Int(5)),
            (bulk("retry_after_ms"), Value::Int(0)),
            (bulk("reset_after_ms"), Value::Int(200)),
        ]);
        for value in [
            flattened,
            named_first,
            map_without_remaining,
            ints(&[2, 5, 4, 0, 200]),
            ints(&[-1, 5, 4, 0, 200]),
            Value::Set(vec![Value::Int(1)]),
            Value::Double(1.0),
            Value::Boolean(true),
            Value::Int(1),
        ] {
            let error = parse_decision(&value).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Protocol, "{value:?}");
            assert!(error.is_backend_failure(), "{value:?}");
        }
        // All or nothing: an overall yes with a denied limit is no RL.ALL reply.
        let contradictory = Value::Array(vec![Value::Int(1), ints(&[0, 3, 0, 900, 900])]);
        assert_eq!(
            parse_all(&contradictory, 1).unwrap_err().kind(),
            ErrorKind::Protocol
        );
        assert_eq!(
            parse_all(
                &Value::Array(vec![Value::Int(2), ints(&[1, 3, 2, 0, 9])]),
                1
            )
            .unwrap_err()
            .kind(),
            ErrorKind::Protocol
        );
        assert!(parse_throttle(&ints(&[2, 11, 10, -1, 6])).is_err());
        assert!(boolean(&Value::Int(3)).is_err());
        assert!(parse_status(&ints(&[1, 5, 4, 0, 200])).is_err());
    }

    #[test]
    fn throttle_replies_follow_redis_cell() {
        let allowed = parse_throttle(&ints(&[0, 11, 10, -1, 6])).unwrap();
        assert!(allowed.allowed);
        assert_eq!(allowed.retry_after, Some(Duration::ZERO));
        let limited = parse_throttle(&ints(&[1, 11, 0, 6, 60])).unwrap();
        assert_eq!(limited.retry_after, Some(Duration::from_secs(6)));
    }

    #[test]
    fn admit_and_settle_send_costs_maxwait_and_since() {
        let args = |cmd: Cmd| -> Vec<String> {
            cmd.args_iter()
                .map(|arg| match arg {
                    redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    redis::Arg::Cursor => String::new(),
                })
                .collect()
        };
        let bucket = Policy::TokenBucket(TokenBucket::new(10, 1, 1_000).unwrap());
        let window = Policy::SlidingApprox(SlidingCounter::new(5, 60_000).unwrap());
        let limits = [("a", bucket, 1), ("b", window, 900)];
        let request = AllRequest {
            peek: false,
            max_wait_ms: 500,
        };
        assert_eq!(
            args(all_each(&limits, request).unwrap()).join(" "),
            "RL.ALL 2 a b TOKENBUCKET 10 1 1000 SLIDING 5 60000 APPROX COSTS 1 900 MAXWAIT 500"
        );
        assert_eq!(
            args(adjust(b"b", &bucket, -40, 7)).join(" "),
            "RL.ADJUST b -40 TOKENBUCKET 10 1 1000 SINCE 7"
        );
        let throttle = Policy::Throttle(Throttle::new(4, 1, 1).unwrap());
        assert_eq!(
            args(adjust(b"t", &throttle, 3, 7)).join(" "),
            "RL.ADJUST t 3 THROTTLE 4 1 1"
        );
    }

    #[test]
    fn commands_carry_options_only_when_needed() {
        let bucket = Policy::TokenBucket(TokenBucket::new(10, 1, 1_000).unwrap());
        let packed = |cmd: Cmd| String::from_utf8_lossy(&cmd.get_packed_command()).into_owned();
        let plain = packed(decide(b"k", &bucket, Request::new(1)).unwrap());
        assert!(!plain.contains("COST") && !plain.contains("PEEK"));
        let request = Request {
            cost: 3,
            peek: true,
            max_wait_ms: 500,
        };
        let full = packed(decide(b"k", &bucket, request).unwrap());
        assert!(full.contains("COST") && full.contains("PEEK") && full.contains("MAXWAIT"));
    }
}
