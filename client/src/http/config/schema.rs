//! The configuration file's shape: what serde reads from TOML (or what code builds).

use serde::Deserialize;
use std::collections::BTreeMap;

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
    pub forwarded_header: Option<String>,
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
    pub key: Option<String>,
    /// Units each request costs (default 1).
    pub cost: Option<u64>,
    /// Report, never refuse.
    #[serde(default)]
    pub shadow: bool,
    /// This rule's failure policy.
    pub failure: Option<FailureConfig>,
    /// The limits for callers without a listed tier.
    #[serde(default)]
    pub limits: Vec<LimitConfig>,
    /// Limits per tier name (`free`, `pro`, ...).
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
}

/// `[rules.tiers.<name>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// The tier's limits.
    pub limits: Vec<LimitConfig>,
}

/// One limit: a name, an algorithm and its numbers (durations in milliseconds).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct LimitConfig {
    /// Its name in headers and bodies (default the algorithm).
    pub name: Option<String>,
    /// `token_bucket`, `sliding`, `sliding_approx`, `fixed` or `throttle`.
    pub algorithm: String,
    pub capacity: Option<u64>,
    pub refill_tokens: Option<u64>,
    pub refill_ms: Option<u64>,
    pub limit: Option<u64>,
    pub window_ms: Option<u64>,
    pub max_burst: Option<u64>,
    pub count_per_period: Option<u64>,
    pub period_s: Option<u64>,
}
