//! The configuration file's shape: what serde reads from TOML (or what code builds).

use crate::http::caller::ForwardedHeader;
use crate::http::rules::KeyKind;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de::value::MapAccessDeserializer};
use std::collections::BTreeMap;
use std::fmt;

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Prefix of every Redis key (default `rl`).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// `draft11` (default), `legacy`, `both` or `none`.
    #[serde(default)]
    pub headers: HeaderStyleConfig,
    /// Decide and report, never refuse (default false).
    #[serde(default)]
    pub shadow: bool,
    /// `open`, `closed` or `fallback`: the rules' failure policy unless they say.
    pub failure: Option<FailureConfig>,
    /// Who is asking.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Who is never limited.
    #[serde(default)]
    pub exempt: ExemptConfig,
    /// The rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// The rule for requests no rule covers (none: they are not limited).
    pub default: Option<RuleConfig>,
}

fn default_prefix() -> String {
    "rl".to_owned()
}

/// Header styles as written in the file.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum HeaderStyleConfig {
    #[default]
    Draft11,
    Legacy,
    Both,
    None,
}

/// Failure policies as written in the file.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum FailureConfig {
    Open,
    Closed,
    Fallback,
}

/// `[identity]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// CIDRs of the proxies whose forwarding headers are believed (default none).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// A CDN header naming the client (e.g. `CF-Connecting-IP`), believed only from
    /// trusted proxies.
    pub client_ip_header: Option<String>,
    /// The forwarding header the trusted proxies write: `x-forwarded-for` (the
    /// default) or `forwarded` (RFC 7239); the other one is ignored, so a client cannot
    /// slip its own through a proxy that does not write it. `either` reads `Forwarded`
    /// when a request has one, else `X-Forwarded-For`: only for proxies that strip or
    /// rewrite both.
    pub forwarded_header: Option<ForwardedHeader>,
    /// IPv6 clients count per prefix of this length (default 64).
    pub ipv6_prefix: Option<u8>,
    /// The header carrying API keys (default `x-api-key`).
    pub api_key_header: Option<String>,
    /// JWT verification for `key = "user"` rules and tiers.
    pub jwt: Option<JwtConfig>,
}

/// `[identity.jwt]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// `HS256` (default), `HS384`, `HS512`, `RS256`, `ES256`, ...
    pub algorithm: Option<String>,
    /// The HMAC secret (HS*).
    pub secret: Option<String>,
    /// An environment variable holding the HMAC secret.
    pub secret_env: Option<String>,
    /// A PEM file with the public key (RS*/ES*/PS*/EdDSA).
    pub public_key_file: Option<String>,
    /// The claim naming the user (default `sub`).
    pub user_claim: Option<String>,
    /// The claim naming the tier (default `tier`).
    pub tier_claim: Option<String>,
    /// If set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// If set, `aud` is required and must contain it.
    pub audience: Option<String>,
}

/// `[exempt]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExemptConfig {
    /// Path patterns never limited (default `/health` and `/metrics`).
    #[serde(default = "default_exempt_paths")]
    pub paths: Vec<String>,
    /// IPs and CIDRs never limited.
    #[serde(default)]
    pub ips: Vec<String>,
    /// User ids never limited.
    #[serde(default)]
    pub users: Vec<String>,
    /// API keys never limited.
    #[serde(default)]
    pub api_keys: Vec<String>,
}

impl Default for ExemptConfig {
    fn default() -> Self {
        Self {
            paths: default_exempt_paths(),
            ips: Vec::new(),
            users: Vec::new(),
            api_keys: Vec::new(),
        }
    }
}

fn default_exempt_paths() -> Vec<String> {
    vec!["/health".to_owned(), "/metrics".to_owned()]
}

/// `[[rules]]` and `[default]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name: metrics, logs, Redis keys.
    pub name: String,
    /// Path pattern (`*` one segment, a final `**` any rest); ignored for `[default]`.
    pub path: Option<String>,
    /// Methods covered (default all).
    #[serde(default)]
    pub methods: Vec<String>,
    /// `ip` (default), `api_key`, `user` or `custom`.
    pub key: Option<KeyKind>,
    /// Units each request costs (default 1).
    pub cost: Option<u64>,
    /// Report, never refuse.
    #[serde(default)]
    pub shadow: bool,
    /// This rule's failure policy.
    pub failure: Option<FailureConfig>,
    /// The limits for callers without a listed tier: tables, rate strings, or one
    /// string of rates separated by `;` (`"5/minute; 100/hour"`).
    #[serde(default, deserialize_with = "limits")]
    pub limits: Vec<LimitConfig>,
    /// Limits per tier name (`free`, `pro`, ...).
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
    /// Progressive penalties for callers refused again and again (default none).
    pub penalty: Option<PenaltyConfig>,
    /// Count only requests answered with these statuses: codes (`"401"`) or classes
    /// (`"4xx"`); peeked before the handler, counted after (default: count all).
    pub count_when: Option<Vec<String>>,
}

/// `[rules.penalty]`: after `after` refusals within `window_ms`, the caller is blocked
/// for `block_ms`, doubled with every further refusal, at most `max_block_ms`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyConfig {
    /// Refusals (429) before the first block.
    pub after: u64,
    /// The window refusals are counted in (default one hour; fixed, epoch-aligned).
    pub window_ms: Option<u64>,
    /// The first block.
    pub block_ms: u64,
    /// The longest block (default one hour).
    pub max_block_ms: Option<u64>,
}

/// `[rules.tiers.<name>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The tier's limits (as a rule's).
    #[serde(deserialize_with = "limits")]
    pub limits: Vec<LimitConfig>,
}

/// One limit: a name, an algorithm and a rate or its numbers (durations in
/// milliseconds). In TOML, a bare string is a limit given by its rate
/// (`limits = ["100/hour"]`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LimitConfig {
    /// Its name in headers, bodies and Redis keys (default: the rate as written
    /// canonically, `5/minute`, else the algorithm).
    pub name: Option<String>,
    /// The algorithm (default: `sliding`, or `token_bucket` for a rate with `burst`).
    pub algorithm: Option<LimitAlgorithm>,
    /// `"100/hour"`, `"5 per minute"`, `"10/second burst 20"`: instead of the numbers.
    pub rate: Option<String>,
    /// Whose requests this limit counts (default: the rule's `key`): a rule can limit
    /// per IP and per user at once.
    pub key: Option<KeyKind>,
    pub capacity: Option<u64>,
    pub refill_tokens: Option<u64>,
    pub refill_ms: Option<u64>,
    pub limit: Option<u64>,
    pub window_ms: Option<u64>,
    pub max_burst: Option<u64>,
    pub count_per_period: Option<u64>,
    pub period_s: Option<u64>,
}

/// The algorithms a limit can use.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum LimitAlgorithm {
    /// `capacity`, `refill_tokens`, `refill_ms`.
    TokenBucket,
    /// Exact sliding window: `limit`, `window_ms`.
    Sliding,
    /// Approximate sliding window: `limit`, `window_ms`.
    SlidingApprox,
    /// Epoch-aligned fixed window: `limit`, `window_ms`.
    Fixed,
    /// GCRA (redis-cell): `max_burst`, `count_per_period`, `period_s`.
    Throttle,
}

impl LimitAlgorithm {
    /// Its name in the file.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenBucket => "token_bucket",
            Self::Sliding => "sliding",
            Self::SlidingApprox => "sliding_approx",
            Self::Fixed => "fixed",
            Self::Throttle => "throttle",
        }
    }
}

impl LimitConfig {
    /// A limit given by its rate (`"100/hour"`), checked when compiled.
    #[must_use]
    pub fn rate(rate: impl Into<String>) -> Self {
        Self {
            rate: Some(rate.into()),
            ..Self::default()
        }
    }
}

/// A limit: a table, or a string holding its rate.
struct LimitVisitor;

impl<'de> Visitor<'de> for LimitVisitor {
    type Value = LimitConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a rate string (\"100/hour\") or a table")
    }

    fn visit_str<E: de::Error>(self, rate: &str) -> Result<LimitConfig, E> {
        Ok(LimitConfig::rate(rate))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<LimitConfig, A::Error> {
        LimitConfig::deserialize(MapAccessDeserializer::new(map))
    }
}

/// A list of limits, or one string of rates separated by `;`.
struct LimitsVisitor;

impl<'de> Visitor<'de> for LimitsVisitor {
    type Value = Vec<LimitConfig>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of limits or a string of rates (\"5/minute; 100/hour\")")
    }

    fn visit_str<E: de::Error>(self, rates: &str) -> Result<Vec<LimitConfig>, E> {
        Ok(super::rate::split(rates).map(LimitConfig::rate).collect())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<LimitConfig>, A::Error> {
        let mut limits = Vec::new();
        while let Some(limit) = seq.next_element::<OneLimit>()? {
            limits.push(limit.0);
        }
        Ok(limits)
    }
}

struct OneLimit(LimitConfig);

impl<'de> Deserialize<'de> for OneLimit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LimitVisitor).map(OneLimit)
    }
}

fn limits<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<LimitConfig>, D::Error> {
    deserializer.deserialize_any(LimitsVisitor)
}
