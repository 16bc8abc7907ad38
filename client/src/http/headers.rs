//! Rate-limit response headers: IETF draft-11 `RateLimit-Policy` / `RateLimit`, the
//! legacy `X-RateLimit-*` trio, or both. Versioned, so a later draft is a new variant.

use super::rules::NamedLimit;
use crate::{Decision, Policy};
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

/// An sf-String.
fn sf_string(text: &str) -> String {
    let escaped: String = text
        .chars()
        .filter(|c| (' '..='~').contains(c))
        .flat_map(|c| match c {
            '"' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

fn set(headers: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

/// Writes the headers of `style` for `limits` and their `decisions`.
pub(crate) fn write(
    headers: &mut HeaderMap,
    style: HeaderStyle,
    limits: &[NamedLimit],
    decisions: &[Decision],
) {
    if matches!(style, HeaderStyle::Draft11 | HeaderStyle::Both) {
        let policy: Vec<String> = limits
            .iter()
            .map(|limit| {
                format!(
                    "{};q={};w={}",
                    sf_string(&limit.name),
                    limit.policy.limit(),
                    window_secs(&limit.policy)
                )
            })
            .collect();
        let state: Vec<String> = limits
            .iter()
            .zip(decisions)
            .map(|(limit, decision)| {
                format!(
                    "{};r={};t={}",
                    sf_string(&limit.name),
                    decision.remaining,
                    effective_window(decision)
                )
            })
            .collect();
        set(headers, "ratelimit-policy", policy.join(", "));
        set(headers, "ratelimit", state.join(", "));
    }
    if matches!(style, HeaderStyle::Legacy | HeaderStyle::Both) {
        if let Some(tightest) = decisions.iter().min_by_key(|d| (d.remaining, d.limit)) {
            set(headers, "x-ratelimit-limit", tightest.limit.to_string());
            set(
                headers,
                "x-ratelimit-remaining",
                tightest.remaining.to_string(),
            );
            set(
                headers,
                "x-ratelimit-reset",
                effective_window(tightest).to_string(),
            );
        }
    }
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
pub(crate) fn merge(response: &mut HeaderMap, ours: &HeaderMap) {
    let keep_legacy = match (legacy_remaining(response), legacy_remaining(ours)) {
        (Some(theirs), Some(ours)) => theirs <= ours,
        _ => false,
    };
    for (name, value) in ours {
        let list = name == "ratelimit" || name == "ratelimit-policy";
        let legacy = name.as_str().starts_with("x-ratelimit-");
        match response.get(name) {
            Some(theirs) if list => {
                let mut joined = theirs.as_bytes().to_vec();
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(value.as_bytes());
                if let Ok(joined) = HeaderValue::from_bytes(&joined) {
                    response.insert(name.clone(), joined);
                }
            }
            Some(_) if legacy && keep_legacy => {}
            _ => {
                response.insert(name.clone(), value.clone());
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
            NamedLimit {
                name: "burst".into(),
                policy: Policy::token_bucket(100, 10, 1_000).unwrap(),
                key: None,
            },
            NamedLimit {
                name: "hourly".into(),
                policy: Policy::sliding(1_000, 3_600_000).unwrap(),
                key: None,
            },
        ];
        let mut headers = HeaderMap::new();
        let decisions = [decision(37, 0, 6_300), decision(250, 0, 2_879_001)];
        write(&mut headers, HeaderStyle::Both, &limits, &decisions);
        assert_eq!(
            headers["ratelimit-policy"],
            r#""burst";q=100;w=10, "hourly";q=1000;w=3600"#
        );
        assert_eq!(
            headers["ratelimit"],
            r#""burst";r=37;t=7, "hourly";r=250;t=2880"#
        );
        assert_eq!(headers["x-ratelimit-remaining"], "37");
        assert_eq!(headers["x-ratelimit-reset"], "7");
    }

    #[test]
    fn an_exhausted_limit_reports_its_retry_time() {
        assert_eq!(effective_window(&decision(0, 100, 9_000)), 1);
        assert_eq!(sf_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
