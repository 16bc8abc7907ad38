//! Rate-limit response headers: IETF draft-11 `RateLimit-Policy` / `RateLimit`, the
//! legacy `X-RateLimit-*` trio, or both. Versioned, so a later draft is a new variant.

use super::rules::NamedLimit;
use crate::{Decision, Policy};
use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::time::Duration;

/// Which headers every response of a limited route carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` of draft-ietf-httpapi-ratelimit-headers-11.
    #[default]
    Draft11,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds from
    /// now) of the limit closest to exhaustion.
    Legacy,
    /// Both.
    Both,
    /// None (a 429 still carries `Retry-After`).
    None,
}

/// Whole seconds, rounded up: a client told to wait less would be refused again.
pub(crate) fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The informative window of a policy, in whole seconds (time to refill from empty for
/// buckets and throttles).
fn window_secs(policy: &Policy) -> u64 {
    let ms = match policy {
        Policy::TokenBucket(p) => {
            u128::from(p.capacity()) * u128::from(p.refill_ms()) / u128::from(p.refill_tokens())
        }
        Policy::Throttle(p) => {
            u128::from(p.limit()) * u128::from(p.period_s()) * 1_000 / u128::from(p.count())
        }
        Policy::Fixed(p) => p.window_ms().into(),
        Policy::Sliding(p) => p.window_ms().into(),
        Policy::SlidingApprox(p) => p.window_ms().into(),
    };
    ceil_secs(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))).max(1)
}

/// The effective window `t` of a decision: until the quota is back when nothing is left
/// and the retry time is known, else (conservatively) until the limiter is full again.
fn effective_window(decision: &Decision) -> u64 {
    match decision.retry_after {
        Some(wait) if decision.remaining == 0 && !wait.is_zero() => ceil_secs(wait),
        _ => ceil_secs(decision.reset_after),
    }
}

/// An sf-String: printable ASCII only, `"` and `\` escaped.
fn sf_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars().filter(|c| (' '..='~').contains(c)) {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// A limit's parts of the draft-11 headers, rendered once when the limit is compiled:
/// a request writes only its numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LimitHeader {
    /// The name as an sf-String, quoted.
    name: Box<str>,
    /// Its `RateLimit-Policy` item, `"name";q=100;w=60`: the whole header value of a
    /// rule with one limit.
    policy: HeaderValue,
}

impl LimitHeader {
    pub(crate) fn new(name: &str, policy: &Policy) -> Self {
        let name = sf_string(name);
        let item = format!("{name};q={};w={}", policy.limit(), window_secs(policy));
        Self {
            name: name.into_boxed_str(),
            // sf-Strings and numbers are printable ASCII: always a valid value.
            policy: HeaderValue::from_str(&item).unwrap_or_else(|_| HeaderValue::from_static("")),
        }
    }
}

/// The rate-limit headers of one response, by name (see [`NAMES`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct RateHeaders {
    values: [Option<HeaderValue>; 5],
}

/// The headers [`RateHeaders`] holds, in its order; the first two are lists.
const NAMES: [HeaderName; 5] = [
    HeaderName::from_static("ratelimit-policy"),
    HeaderName::from_static("ratelimit"),
    HeaderName::from_static("x-ratelimit-limit"),
    HeaderName::from_static("x-ratelimit-remaining"),
    HeaderName::from_static("x-ratelimit-reset"),
];
const POLICY: usize = 0;
const STATE: usize = 1;
const LEGACY_LIMIT: usize = 2;
const LEGACY_REMAINING: usize = 3;
const LEGACY_RESET: usize = 4;

/// How many decimal digits `n` has.
fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Appends `n` in decimal.
fn push_number(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    let mut rest = n;
    loop {
        at -= 1;
        // A digit: `rest % 10` fits a byte.
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// A header value of exactly these bytes, in one allocation (`out` was sized exactly).
fn value_of(out: Vec<u8>) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out)).ok()
}

/// `n` as a header value.
fn number(n: u64) -> Option<HeaderValue> {
    let mut out = Vec::with_capacity(digits(n));
    push_number(&mut out, n);
    value_of(out)
}

impl RateHeaders {
    /// The headers of `style` for `limits` and their `decisions`.
    pub(crate) fn write(style: HeaderStyle, limits: &[NamedLimit], decisions: &[Decision]) -> Self {
        let mut headers = Self::default();
        if matches!(style, HeaderStyle::Draft11 | HeaderStyle::Both) {
            headers.values[POLICY] = policy_list(limits);
            headers.values[STATE] = state_list(limits, decisions);
        }
        if matches!(style, HeaderStyle::Legacy | HeaderStyle::Both) {
            if let Some(tightest) = decisions.iter().min_by_key(|d| (d.remaining, d.limit)) {
                headers.values[LEGACY_LIMIT] = number(tightest.limit);
                headers.values[LEGACY_REMAINING] = number(tightest.remaining);
                headers.values[LEGACY_RESET] = number(effective_window(tightest));
            }
        }
        headers
    }

    /// `(name, value)` of every header present.
    fn into_pairs(self) -> impl Iterator<Item = (HeaderName, HeaderValue)> {
        NAMES
            .into_iter()
            .zip(self.values)
            .filter_map(|(name, value)| Some((name, value?)))
    }

    /// Sets these headers on `headers`, replacing any of the same names.
    pub(crate) fn insert_into(self, headers: &mut HeaderMap) {
        for (name, value) in self.into_pairs() {
            headers.insert(name, value);
        }
    }

    /// The headers as a map (tests).
    #[cfg(test)]
    fn into_map(self) -> HeaderMap {
        let mut map = HeaderMap::new();
        self.insert_into(&mut map);
        map
    }

    /// `X-RateLimit-Remaining` as a number.
    fn legacy_remaining(&self) -> Option<u64> {
        self.values[LEGACY_REMAINING]
            .as_ref()
            .and_then(|value| value.to_str().ok()?.parse().ok())
    }
}

/// `RateLimit-Policy`: the limits' items, rendered once; joined when there are several.
fn policy_list(limits: &[NamedLimit]) -> Option<HeaderValue> {
    if let [limit] = limits {
        return Some(limit.header.policy.clone());
    }
    let items = limits.iter().map(|limit| limit.header.policy.as_bytes());
    let length = items.clone().map(|item| item.len() + 2).sum::<usize>();
    let mut out = Vec::with_capacity(length.saturating_sub(2));
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(item);
    }
    value_of(out)
}

/// `RateLimit`: `"name";r=remaining;t=window` per limit.
fn state_list(limits: &[NamedLimit], decisions: &[Decision]) -> Option<HeaderValue> {
    let items = || {
        limits.iter().zip(decisions).map(|(limit, decision)| {
            (
                &*limit.header.name,
                decision.remaining,
                effective_window(decision),
            )
        })
    };
    let length = items()
        .map(|(name, r, t)| name.len() + 3 + digits(r) + 3 + digits(t) + 2)
        .sum::<usize>();
    let mut out = Vec::with_capacity(length.saturating_sub(2));
    for (i, (name, r, t)) in items().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b";r=");
        push_number(&mut out, r);
        out.extend_from_slice(b";t=");
        push_number(&mut out, t);
    }
    value_of(out)
}

/// `X-RateLimit-Remaining` as a number.
fn legacy_remaining(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("x-ratelimit-remaining")?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Adds `ours` to a response that may carry another layer's headers already (stacked
/// layers: a global limit around a route's own). The draft-11 headers are lists: our
/// items follow theirs. The legacy trio describes one limit: the one closest to
/// exhaustion stays.
pub(crate) fn merge(response: &mut HeaderMap, ours: RateHeaders) {
    // Theirs is read only when ours has a legacy trio (not with draft-11 headers alone).
    let keep_legacy = ours
        .legacy_remaining()
        .and_then(|ours| Some(legacy_remaining(response)? <= ours))
        .unwrap_or(false);
    for (i, (name, value)) in NAMES.into_iter().zip(ours.values).enumerate() {
        let Some(value) = value else { continue };
        let list = i == POLICY || i == STATE;
        match response.entry(name) {
            Entry::Occupied(mut theirs) if list => {
                let mut joined = theirs.get().as_bytes().to_vec();
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(value.as_bytes());
                if let Ok(joined) = HeaderValue::from_bytes(&joined) {
                    theirs.insert(joined);
                }
            }
            Entry::Occupied(_) if keep_legacy => {}
            Entry::Occupied(mut theirs) => {
                theirs.insert(value);
            }
            Entry::Vacant(slot) => {
                slot.insert(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;

    fn decision(remaining: u64, retry_ms: u64, reset_ms: u64) -> Decision {
        Decision {
            allowed: remaining > 0,
            limit: 100,
            remaining,
            retry_after: Some(Duration::from_millis(retry_ms)),
            reset_after: Duration::from_millis(reset_ms),
            source: Source::Server,
        }
    }

    #[test]
    fn draft_11_lists_every_policy_rounding_up() {
        let limits = [
            NamedLimit::new(
                "burst".into(),
                Policy::token_bucket(100, 10, 1_000).unwrap(),
                None,
            ),
            NamedLimit::new(
                "hourly".into(),
                Policy::sliding(1_000, 3_600_000).unwrap(),
                None,
            ),
        ];
        let decisions = [decision(37, 0, 6_300), decision(250, 0, 2_879_001)];
        let headers = RateHeaders::write(HeaderStyle::Both, &limits, &decisions).into_map();
        assert_eq!(
            headers["ratelimit-policy"],
            r#""burst";q=100;w=10, "hourly";q=1000;w=3600"#
        );
        assert_eq!(
            headers["ratelimit"],
            r#""burst";r=37;t=7, "hourly";r=250;t=2880"#
        );
        assert_eq!(headers["x-ratelimit-limit"], "100");
        assert_eq!(headers["x-ratelimit-remaining"], "37");
        assert_eq!(headers["x-ratelimit-reset"], "7");
        let one = RateHeaders::write(HeaderStyle::Draft11, &limits[..1], &decisions[..1]);
        let one = one.into_map();
        assert_eq!(one["ratelimit-policy"], r#""burst";q=100;w=10"#);
        assert_eq!(one["ratelimit"], r#""burst";r=37;t=7"#);
        assert!(one.get("x-ratelimit-limit").is_none());
    }

    #[test]
    fn numbers_are_written_in_full() {
        for n in [0, 7, 10, 99, 100, 12_345, u64::MAX] {
            assert_eq!(number(n).unwrap(), n.to_string().as_str());
            assert_eq!(digits(n), n.to_string().len());
        }
    }

    #[test]
    fn stacked_layers_join_lists_and_keep_the_tightest_legacy_trio() {
        let limits = [NamedLimit::new(
            "a".into(),
            Policy::fixed(10, 1_000).unwrap(),
            None,
        )];
        let mut response = HeaderMap::new();
        merge(
            &mut response,
            RateHeaders::write(HeaderStyle::Both, &limits, &[decision(3, 0, 500)]),
        );
        merge(
            &mut response,
            RateHeaders::write(HeaderStyle::Both, &limits, &[decision(8, 0, 500)]),
        );
        assert_eq!(response["ratelimit"], r#""a";r=3;t=1, "a";r=8;t=1"#);
        assert_eq!(response["x-ratelimit-remaining"], "3");
    }

    #[test]
    fn an_exhausted_limit_reports_its_retry_time() {
        assert_eq!(effective_window(&decision(0, 100, 9_000)), 1);
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
