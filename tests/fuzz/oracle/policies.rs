//! Stored policies: the documented range of every policy field, and RL.STATUS replies.

use redis::Value;
use redlimit_core::Algorithm;

use crate::oracle::check::check_decision;
use crate::oracle::replies::{DECISION_FIELDS, Encoding, decision_from, int_of, pairs, text_of};
use crate::oracle::{Rule, throttle_most_remaining};
use crate::settings::{
    MAX_APPROX, MAX_BUCKET_PRODUCT, MAX_COUNT, MAX_DURATION_MS, MAX_LEASES, MAX_SLIDING_LIMIT,
};

const ALGORITHMS: [Algorithm; 7] = [
    Algorithm::TokenBucket,
    Algorithm::Throttle,
    Algorithm::Fixed,
    Algorithm::Sliding,
    Algorithm::SlidingApprox,
    Algorithm::Concurrency,
    Algorithm::Usage,
];

/// The largest number a throttle's policy may hold: anything but a saturated `i64::MAX`
/// (redis-cell's own ranges, which the core checks, keep every field below it).
const THROTTLE_MOST: u64 = i64::MAX.unsigned_abs() - 1;

/// The policy fields of `algorithm` (its arguments, and RL.STATUS's fields), each with its
/// documented range. The first is the limit (a throttle's is `max_burst + 1`). A token
/// bucket's `capacity` is also bounded by `refill_ms` (see [`bucket_capacity_most`]).
pub fn policy_fields(algorithm: Algorithm) -> &'static [(&'static str, u64, u64)] {
    match algorithm {
        Algorithm::TokenBucket => &[
            ("capacity", 1, MAX_BUCKET_PRODUCT),
            ("refill_tokens", 1, MAX_COUNT),
            ("refill_ms", 1, MAX_DURATION_MS),
        ],
        Algorithm::Throttle => &[
            ("max_burst", 0, THROTTLE_MOST),
            ("count_per_period", 1, THROTTLE_MOST),
            ("period", 1, THROTTLE_MOST),
        ],
        Algorithm::Fixed => &[("limit", 1, MAX_COUNT), ("window_ms", 1, MAX_DURATION_MS)],
        Algorithm::Sliding => &[
            ("limit", 1, MAX_SLIDING_LIMIT),
            ("window_ms", 1, MAX_DURATION_MS),
        ],
        Algorithm::SlidingApprox => &[("limit", 1, MAX_APPROX), ("window_ms", 1, MAX_APPROX)],
        Algorithm::Concurrency => &[("limit", 1, MAX_LEASES), ("lease_ms", 1, MAX_DURATION_MS)],
        // Only reached through RL.SETSTATE of a usage counter's encoding.
        Algorithm::Usage => &[
            ("bucket_ms", 1, MAX_DURATION_MS),
            ("buckets", 1, redlimit_core::MAX_USAGE_BUCKETS),
        ],
    }
}

/// A token bucket's largest `capacity` for `refill_ms`: `capacity * refill_ms` is at most
/// 2^62 / 1000.
pub fn bucket_capacity_most(refill_ms: u64) -> u64 {
    MAX_BUCKET_PRODUCT / refill_ms.max(1)
}

/// A token bucket's largest `MAXWAIT` for `refill_tokens`: `MAXWAIT * refill_tokens` is at
/// most 2^62 / 1000.
pub fn bucket_max_wait_most(refill_tokens: u64) -> u64 {
    (MAX_BUCKET_PRODUCT / refill_tokens.max(1)).min(MAX_DURATION_MS)
}

/// Checks the numbers of a stored policy (in [`policy_fields`] order) against the
/// documented ranges.
pub fn check_policy_ranges(algorithm: Algorithm, numbers: &[u64]) -> Result<(), String> {
    for (&(name, min, most), &n) in policy_fields(algorithm).iter().zip(numbers) {
        if !(min..=most).contains(&n) {
            return Err(format!("{name} {n} is outside {min}..={most}"));
        }
    }
    if algorithm == Algorithm::TokenBucket && numbers[0] > bucket_capacity_most(numbers[2]) {
        return Err(format!(
            "capacity {} is above {} for refill_ms {}",
            numbers[0],
            bucket_capacity_most(numbers[2]),
            numbers[2]
        ));
    }
    Ok(())
}

/// The field names of an RL.STATUS reply for `algorithm`, in order: each once.
fn status_names(algorithm: Algorithm) -> Vec<&'static str> {
    let mut names = vec!["algorithm"];
    names.extend(policy_fields(algorithm).iter().map(|&(name, ..)| name));
    for name in DECISION_FIELDS {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Checks an `RL.STATUS` reply for a limiter and returns its algorithm.
pub fn check_status(
    value: &Value,
    encoding: Encoding,
    expected: Option<Algorithm>,
) -> Result<Algorithm, String> {
    let maps = encoding.maps;
    let fields = pairs(value, maps)?;
    let name = fields.get("algorithm").and_then(text_of);
    let Some(algorithm) = ALGORITHMS
        .into_iter()
        .find(|a| Some(a.name()) == name.as_deref())
    else {
        return Err(format!("algorithm is {name:?} in {value:?}"));
    };
    if expected.is_some_and(|e| e != algorithm) {
        return Err(format!("expected a {expected:?} limiter, got {value:?}"));
    }
    let expected_names = status_names(algorithm);
    if fields.len() != expected_names.len()
        || expected_names
            .iter()
            .any(|name| !fields.contains_key(*name))
    {
        return Err(format!(
            "expected exactly the fields {expected_names:?}, got {value:?}"
        ));
    }
    let mut numbers = Vec::new();
    for &(name, ..) in policy_fields(algorithm) {
        let n = int_of(fields.get(name), name)?;
        let n = u64::try_from(n).map_err(|_| format!("{name} is {n} in {value:?}"))?;
        numbers.push(n);
    }
    // Through a script Lua's doubles round large numbers, but never across a bound (each
    // is a double).
    check_policy_ranges(algorithm, &numbers)
        .map_err(|e| format!("RL.STATUS reports a policy out of range: {e} in {value:?}"))?;
    if algorithm == Algorithm::Usage {
        // A usage counter never refuses and has no limit (docs/commands.md, RL.USAGE).
        let [allowed, limit, remaining, retry, reset] = decision_from(&fields, maps)?;
        if [allowed, limit, remaining, retry] != [1, 0, 0, 0] || reset < 0 {
            return Err(format!("a usage counter's status: {value:?}"));
        }
        return Ok(algorithm);
    }
    let limit = match algorithm {
        Algorithm::Throttle => numbers[0].saturating_add(1),
        _ => numbers[0],
    };
    let mut rule = Rule::simple(algorithm, limit, 1, true);
    if algorithm == Algorithm::Throttle {
        rule.most_remaining = throttle_most_remaining(numbers[0], numbers[1], numbers[2]);
    }
    check_decision(decision_from(&fields, maps)?, &rule, encoding.script)
        .map_err(|e| format!("status {value:?}: {e}"))?;
    Ok(algorithm)
}
