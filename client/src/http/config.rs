//! The TOML configuration of the middleware: read, overridden from the environment,
//! validated with errors naming the bad field, and compiled into [`Settings`].

use super::caller::{CallerResolver, ForwardedHeader, JwtVerifier};
use super::headers::HeaderStyle;
use super::rules::{Exemptions, KeyKind, NamedLimit, PathPattern, Rule, RuleSet};
use crate::{FailurePolicy, Policy};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A configuration that cannot be used, naming the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: `rules[1].limits[0].capacity`, an environment variable, or the file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn error(field: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.to_string(),
    }
}

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

/// A compiled configuration, what the middleware runs.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub(crate) prefix: String,
    pub(crate) headers: HeaderStyle,
    pub(crate) shadow: bool,
    pub(crate) resolver: CallerResolver,
    pub(crate) exempt: Exemptions,
    pub(crate) rules: RuleSet,
}

/// The environment variable prefix of overrides: `REDLIMIT__SHADOW=true`,
/// `REDLIMIT__RULES__0__LIMITS__0__CAPACITY=20`, `REDLIMIT__IDENTITY__JWT__SECRET=...`.
pub const ENV_PREFIX: &str = "REDLIMIT__";

impl Config {
    /// Parses TOML text.
    ///
    /// # Errors
    /// Invalid TOML, or an unknown or mistyped field, named (`rules[0].cost`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        Self::from_table(parse(text)?)
    }

    /// Reads `path`, applies the `REDLIMIT__*` environment overrides, and parses.
    ///
    /// # Errors
    /// An unreadable file, invalid TOML, a bad override or field, named.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| error(path.display().to_string(), e))?;
        let mut value = toml::Value::Table(parse(&text)?);
        for (name, raw) in std::env::vars() {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut value, path, &raw).map_err(|message| error(&name, message))?;
            }
        }
        match value {
            toml::Value::Table(table) => Self::from_table(table),
            _ => Err(error("config", "is not a table")),
        }
    }

    /// Deserializes, naming the field of the first error.
    fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let field = e.path().to_string();
            error(
                if field == "." {
                    "config".to_owned()
                } else {
                    field
                },
                e.into_inner().message(),
            )
        })
    }

    /// Checks everything and builds what the middleware runs.
    ///
    /// # Errors
    /// The first invalid field, named.
    pub fn compile(&self) -> Result<Settings, ConfigError> {
        let failure = self.failure.map(failure_policy);
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let field = format!("rules[{i}]");
            if rule.path.is_none() {
                return Err(error(format!("{field}.path"), "is required"));
            }
            let compiled = compile_rule(&field, rule, failure)?;
            if rules.iter().any(|r: &Rule| r.name == compiled.name) {
                return Err(error(format!("{field}.name"), "is used by another rule"));
            }
            rules.push(compiled);
        }
        let default = match &self.default {
            Some(rule) => {
                let mut compiled = compile_rule("default", rule, failure)?;
                // Its name keys its counters and metrics, like any rule's.
                if rules.iter().any(|r: &Rule| r.name == compiled.name) {
                    return Err(error("default.name", "is used by another rule"));
                }
                compiled.path = None;
                compiled.methods.clear();
                Some(compiled)
            }
            None => None,
        };
        if self.identity.jwt.is_none() {
            // Users are known only from verified tokens: without a verifier, such a
            // rule would silently count every caller by IP, and such an exemption
            // would never apply.
            let by_user = self
                .rules
                .iter()
                .enumerate()
                .map(|(i, rule)| (format!("rules[{i}].key"), rule))
                .chain(
                    self.default
                        .iter()
                        .map(|rule| ("default.key".to_owned(), rule)),
                )
                .find(|(_, rule)| rule.key.as_deref() == Some("user"));
            if let Some((field, _)) = by_user {
                return Err(error(field, "`user` needs [identity.jwt] to verify tokens"));
            }
            // Tiers come from tokens too, or from an `Identify` (key = "custom").
            let tiered = self
                .rules
                .iter()
                .enumerate()
                .map(|(i, rule)| (format!("rules[{i}].tiers"), rule))
                .chain(
                    self.default
                        .iter()
                        .map(|rule| ("default.tiers".to_owned(), rule)),
                )
                .find(|(_, rule)| !rule.tiers.is_empty() && rule.key.as_deref() != Some("custom"));
            if let Some((field, _)) = tiered {
                return Err(error(
                    field,
                    "tiers need [identity.jwt] (or key = \"custom\" and an Identify)",
                ));
            }
            if !self.exempt.users.is_empty() {
                return Err(error(
                    "exempt.users",
                    "needs [identity.jwt] to verify tokens",
                ));
            }
        }
        Ok(Settings {
            prefix: untagged("key_prefix", &self.key_prefix)?.to_owned(),
            headers: match self.headers {
                HeaderStyleConfig::Draft11 => HeaderStyle::Draft11,
                HeaderStyleConfig::Legacy => HeaderStyle::Legacy,
                HeaderStyleConfig::Both => HeaderStyle::Both,
                HeaderStyleConfig::None => HeaderStyle::None,
            },
            shadow: self.shadow,
            resolver: compile_identity(&self.identity)?,
            exempt: compile_exempt(&self.exempt)?,
            rules: RuleSet { rules, default },
        })
    }
}

/// TOML syntax, with the line and column.
fn parse(text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| error("config", e.to_string().trim_end()))
}

/// Sets the value at `path` (`RULES__0__LIMITS__0__CAPACITY`, case-insensitive keys).
fn apply_override(root: &mut toml::Value, path: &str, raw: &str) -> Result<(), String> {
    let parts: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    let Some((last, walk)) = parts.split_last() else {
        return Err("is empty".to_owned());
    };
    let mut node = root;
    for part in walk {
        node = match node {
            toml::Value::Table(table) => table
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new())),
            toml::Value::Array(items) => {
                let index: usize = part
                    .parse()
                    .map_err(|_| format!("`{part}` is not an index"))?;
                items
                    .get_mut(index)
                    .ok_or_else(|| format!("no element {index}"))?
            }
            _ => return Err(format!("`{part}` is inside a plain value")),
        };
    }
    // The raw text as a TOML value (number, boolean, array), else as a string.
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    match node {
        toml::Value::Table(table) => {
            table.insert(last.clone(), value);
            Ok(())
        }
        toml::Value::Array(items) => {
            let index: usize = last
                .parse()
                .map_err(|_| format!("`{last}` is not an index"))?;
            let slot = items
                .get_mut(index)
                .ok_or_else(|| format!("no element {index}"))?;
            *slot = value;
            Ok(())
        }
        _ => Err("does not name a field".to_owned()),
    }
}

/// A non-empty name without braces: it goes into Redis keys before or inside their
/// hash tag (`{prefix}:{rule:caller}:{limit}`), where a brace would move the tag and put
/// every caller of a rule in one Cluster slot.
fn untagged<'s>(field: &str, value: &'s str) -> Result<&'s str, ConfigError> {
    if value.contains(['{', '}']) {
        return Err(error(field, "must not contain `{` or `}`"));
    }
    nonempty(field, value)
}

fn nonempty<'s>(field: &str, value: &'s str) -> Result<&'s str, ConfigError> {
    if value.is_empty() {
        return Err(error(field, "must not be empty"));
    }
    Ok(value)
}

fn failure_policy(config: FailureConfig) -> FailurePolicy {
    match config {
        FailureConfig::Open => FailurePolicy::Open,
        FailureConfig::Closed => FailurePolicy::Closed,
        FailureConfig::Fallback => FailurePolicy::Fallback,
    }
}

fn compile_rule(
    field: &str,
    rule: &RuleConfig,
    failure: Option<FailurePolicy>,
) -> Result<Rule, ConfigError> {
    let name = untagged(&format!("{field}.name"), &rule.name)?;
    let path = match &rule.path {
        Some(path) => {
            Some(PathPattern::parse(path).map_err(|m| error(format!("{field}.path"), m))?)
        }
        None => None,
    };
    let methods = rule
        .methods
        .iter()
        .enumerate()
        .map(|(i, m)| {
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                error(
                    format!("{field}.methods[{i}]"),
                    format!("`{m}` is not a method"),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let key = match rule.key.as_deref().unwrap_or("ip") {
        "ip" => KeyKind::Ip,
        "api_key" => KeyKind::ApiKey,
        "user" => KeyKind::User,
        "custom" => KeyKind::Custom,
        other => {
            return Err(error(
                format!("{field}.key"),
                format!("`{other}` is not one of ip, api_key, user, custom"),
            ));
        }
    };
    let default_limits = compile_limits(&format!("{field}.limits"), &rule.limits)?;
    let mut tiers = Vec::with_capacity(rule.tiers.len());
    for (tier, config) in &rule.tiers {
        let limits = compile_limits(&format!("{field}.tiers.{tier}.limits"), &config.limits)?;
        tiers.push((tier.clone(), limits));
    }
    same_algorithm_per_name(field, &default_limits, &tiers)?;
    if default_limits.is_empty() && tiers.is_empty() {
        return Err(error(
            format!("{field}.limits"),
            "a rule needs at least one limit",
        ));
    }
    Ok(Rule {
        name: name.to_owned(),
        methods,
        path,
        key,
        cost: rule.cost.unwrap_or(1),
        shadow: rule.shadow,
        failure: rule.failure.map(failure_policy).or(failure),
        tiers,
        default_limits,
    })
}

/// A limit name keys one Redis limiter per caller, whatever the tier: within a rule, it
/// must keep one algorithm (else callers of two tiers under one key, such as the IP of
/// an anonymous and a signed-in caller, would find a limiter of the other algorithm).
fn same_algorithm_per_name(
    field: &str,
    default_limits: &[NamedLimit],
    tiers: &[(String, Vec<NamedLimit>)],
) -> Result<(), ConfigError> {
    let mut seen: Vec<&NamedLimit> = default_limits.iter().collect();
    for (tier, limits) in tiers {
        for (i, limit) in limits.iter().enumerate() {
            match seen.iter().find(|l| l.name == limit.name) {
                Some(other)
                    if std::mem::discriminant(&other.policy)
                        != std::mem::discriminant(&limit.policy) =>
                {
                    return Err(error(
                        format!("{field}.tiers.{tier}.limits[{i}].algorithm"),
                        format!(
                            "`{}` has another algorithm elsewhere in this rule: give it another name",
                            limit.name
                        ),
                    ));
                }
                Some(_) => {}
                None => seen.push(limit),
            }
        }
    }
    Ok(())
}

fn compile_limits(field: &str, limits: &[LimitConfig]) -> Result<Vec<NamedLimit>, ConfigError> {
    let mut compiled: Vec<NamedLimit> = Vec::with_capacity(limits.len());
    for (i, limit) in limits.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let policy = compile_policy(&field, limit)?;
        if limits.len() > 1 && matches!(policy, Policy::Throttle(_)) {
            return Err(error(
                format!("{field}.algorithm"),
                "throttle cannot be combined with other limits (RL.ALL takes token_bucket, \
                 sliding, sliding_approx and fixed)",
            ));
        }
        let name = limit
            .name
            .clone()
            .unwrap_or_else(|| limit.algorithm.clone());
        if compiled.iter().any(|l| l.name == name) {
            return Err(error(
                format!("{field}.name"),
                format!("`{name}` is used twice"),
            ));
        }
        compiled.push(NamedLimit { name, policy });
    }
    Ok(compiled)
}

fn compile_policy(field: &str, limit: &LimitConfig) -> Result<Policy, ConfigError> {
    let need = |name: &str, value: Option<u64>| {
        value.ok_or_else(|| {
            error(
                format!("{field}.{name}"),
                format!("is required by {}", limit.algorithm),
            )
        })
    };
    let named = |e: crate::ArgumentError| {
        let argument = match e.argument() {
            "period" => "period_s",
            "count_per_period" => "count_per_period",
            other => other,
        };
        error(format!("{field}.{argument}"), e)
    };
    let extra = |allowed: &[&str]| -> Result<(), ConfigError> {
        let given = [
            ("capacity", limit.capacity),
            ("refill_tokens", limit.refill_tokens),
            ("refill_ms", limit.refill_ms),
            ("limit", limit.limit),
            ("window_ms", limit.window_ms),
            ("max_burst", limit.max_burst),
            ("count_per_period", limit.count_per_period),
            ("period_s", limit.period_s),
        ];
        match given
            .iter()
            .find(|(name, value)| value.is_some() && !allowed.contains(name))
        {
            Some((name, _)) => Err(error(
                format!("{field}.{name}"),
                format!("does not apply to {}", limit.algorithm),
            )),
            None => Ok(()),
        }
    };
    match limit.algorithm.as_str() {
        "token_bucket" => {
            extra(&["capacity", "refill_tokens", "refill_ms"])?;
            Policy::token_bucket(
                need("capacity", limit.capacity)?,
                need("refill_tokens", limit.refill_tokens)?,
                need("refill_ms", limit.refill_ms)?,
            )
            .map_err(named)
        }
        "throttle" => {
            extra(&["max_burst", "count_per_period", "period_s"])?;
            Policy::throttle(
                need("max_burst", limit.max_burst)?,
                need("count_per_period", limit.count_per_period)?,
                need("period_s", limit.period_s)?,
            )
            .map_err(named)
        }
        algorithm @ ("sliding" | "sliding_approx" | "fixed") => {
            extra(&["limit", "window_ms"])?;
            let (limit_n, window) = (
                need("limit", limit.limit)?,
                need("window_ms", limit.window_ms)?,
            );
            match algorithm {
                "sliding" => Policy::sliding(limit_n, window),
                "sliding_approx" => Policy::sliding_approx(limit_n, window),
                _ => Policy::fixed(limit_n, window),
            }
            .map_err(named)
        }
        other => Err(error(
            format!("{field}.algorithm"),
            format!(
                "`{other}` is not one of token_bucket, sliding, sliding_approx, fixed, throttle"
            ),
        )),
    }
}

fn compile_identity(config: &IdentityConfig) -> Result<CallerResolver, ConfigError> {
    let trusted_proxies = config
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, net)| {
            parse_net(net).map_err(|m| error(format!("identity.trusted_proxies[{i}]"), m))
        })
        .collect::<Result<_, _>>()?;
    let header = |field: &str, name: &str| {
        http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| error(field, format!("`{name}` is not a header name")))
    };
    let client_ip_header = match &config.client_ip_header {
        Some(name) => Some(header("identity.client_ip_header", name)?),
        None => None,
    };
    // Both are read only from trusted proxies: without any, they would never apply.
    if config.trusted_proxies.is_empty() {
        for (field, given) in [
            (
                "identity.client_ip_header",
                config.client_ip_header.is_some(),
            ),
            (
                "identity.forwarded_header",
                config.forwarded_header.is_some(),
            ),
        ] {
            if given {
                return Err(error(
                    field,
                    "is read only from trusted proxies: list them in identity.trusted_proxies",
                ));
            }
        }
    }
    let forwarded = match config.forwarded_header.as_deref() {
        None => ForwardedHeader::XForwardedFor,
        Some(name) if name.eq_ignore_ascii_case("x-forwarded-for") => {
            ForwardedHeader::XForwardedFor
        }
        Some(name) if name.eq_ignore_ascii_case("either") => ForwardedHeader::Either,
        Some(name) if name.eq_ignore_ascii_case("forwarded") => ForwardedHeader::Forwarded,
        Some(name) => {
            return Err(error(
                "identity.forwarded_header",
                format!("`{name}` is not one of x-forwarded-for, forwarded, either"),
            ));
        }
    };
    let api_key_header = header(
        "identity.api_key_header",
        config.api_key_header.as_deref().unwrap_or("x-api-key"),
    )?;
    let ipv6_prefix = config.ipv6_prefix.unwrap_or(64);
    if ipv6_prefix > 128 {
        return Err(error("identity.ipv6_prefix", "must be at most 128"));
    }
    let jwt = match &config.jwt {
        Some(jwt) => Some(compile_jwt(jwt)?),
        None => None,
    };
    Ok(CallerResolver {
        trusted_proxies,
        client_ip_header,
        forwarded,
        ipv6_prefix,
        api_key_header: Some(api_key_header),
        jwt,
    })
}

fn compile_jwt(config: &JwtConfig) -> Result<JwtVerifier, ConfigError> {
    let field = "identity.jwt";
    let name = config.algorithm.as_deref().unwrap_or("HS256");
    let algorithm: Algorithm = name.parse().map_err(|_| {
        error(
            format!("{field}.algorithm"),
            format!("`{name}` is not a JWT algorithm"),
        )
    })?;
    let key = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            let secret = match (&config.secret, &config.secret_env) {
                (Some(secret), None) => secret.clone(),
                (None, Some(var)) => std::env::var(var).map_err(|_| {
                    error(format!("{field}.secret_env"), format!("`{var}` is not set"))
                })?,
                _ => {
                    return Err(error(
                        format!("{field}.secret"),
                        "give exactly one of secret and secret_env for HMAC algorithms",
                    ));
                }
            };
            if secret.len() < 16 {
                return Err(error(
                    format!("{field}.secret"),
                    "must be at least 16 bytes",
                ));
            }
            DecodingKey::from_secret(secret.as_bytes())
        }
        _ => {
            let file = config.public_key_file.as_ref().ok_or_else(|| {
                error(
                    format!("{field}.public_key_file"),
                    format!("is required by {name}"),
                )
            })?;
            let pem = std::fs::read(file)
                .map_err(|e| error(format!("{field}.public_key_file"), format!("{file}: {e}")))?;
            let parsed = match algorithm {
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                _ => DecodingKey::from_rsa_pem(&pem),
            };
            parsed.map_err(|e| error(format!("{field}.public_key_file"), e))?
        }
    };
    let mut validation = Validation::new(algorithm);
    // `exp` and `nbf` are checked when present (60 s leeway for clock skew); `iss` and
    // `aud` are required when configured: a token that omits them was not issued for us.
    validation.required_spec_claims.clear();
    validation.validate_nbf = true;
    if let Some(issuer) = &config.issuer {
        validation.set_issuer(&[issuer]);
        validation.required_spec_claims.insert("iss".to_owned());
    }
    match &config.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        None => validation.validate_aud = false,
    }
    Ok(JwtVerifier {
        key,
        validation,
        user_claim: config
            .user_claim
            .clone()
            .unwrap_or_else(|| "sub".to_owned()),
        tier_claim: config
            .tier_claim
            .clone()
            .unwrap_or_else(|| "tier".to_owned()),
    })
}

fn compile_exempt(config: &ExemptConfig) -> Result<Exemptions, ConfigError> {
    let paths = config
        .paths
        .iter()
        .enumerate()
        .map(|(i, p)| PathPattern::parse(p).map_err(|m| error(format!("exempt.paths[{i}]"), m)))
        .collect::<Result<_, _>>()?;
    let nets = config
        .ips
        .iter()
        .enumerate()
        .map(|(i, net)| parse_net(net).map_err(|m| error(format!("exempt.ips[{i}]"), m)))
        .collect::<Result<_, _>>()?;
    if let Some(i) = config.users.iter().position(|user| user.trim().is_empty()) {
        return Err(error(
            format!("exempt.users[{i}]"),
            "an empty user id names nobody (a token with an empty user claim has no user)",
        ));
    }
    Ok(Exemptions {
        paths,
        nets,
        users: config.users.clone(),
        api_keys: config.api_keys.clone(),
    })
}

/// A CIDR, or a single address as its /32 or /128.
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not an IP address or CIDR"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [[rules]]
        name = "hello"
        path = "/api/hello"
        methods = ["GET"]
        limits = [{ name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 1000 }]

        [[rules]]
        name = "login"
        path = "/api/login"
        methods = ["POST"]
        limits = [{ name = "per-minute", algorithm = "sliding", limit = 5, window_ms = 60000 }]
    "#;

    fn compile_err(text: &str) -> ConfigError {
        Config::from_toml(text)
            .and_then(|c| c.compile().map(|_| ()))
            .unwrap_err()
    }

    #[test]
    fn the_example_compiles() {
        let settings = Config::from_toml(EXAMPLE).unwrap().compile().unwrap();
        assert_eq!(settings.rules.rules.len(), 2);
        assert!(settings.exempt.path("/health"));
        assert!(
            settings
                .rules
                .find(&http::Method::GET, "/api/hello")
                .is_some()
        );
        assert!(
            settings
                .rules
                .find(&http::Method::POST, "/api/hello")
                .is_none()
        );
    }

    #[test]
    fn errors_name_the_bad_field() {
        let bad_capacity = EXAMPLE.replace("capacity = 10", "capacity = 0");
        assert_eq!(
            compile_err(&bad_capacity).field,
            "rules[0].limits[0].capacity"
        );
        let missing = EXAMPLE.replace("refill_ms = 1000", "");
        assert_eq!(compile_err(&missing).field, "rules[0].limits[0].refill_ms");
        let misplaced = EXAMPLE.replace("window_ms = 60000", "window_ms = 60000, capacity = 3");
        assert_eq!(compile_err(&misplaced).field, "rules[1].limits[0].capacity");
        let method = EXAMPLE.replace("\"POST\"", "\"PO ST\"");
        assert_eq!(compile_err(&method).field, "rules[1].methods[0]");
        let proxy = format!("[identity]\ntrusted_proxies = [\"10.0.0.0/33\"]\n{EXAMPLE}");
        assert_eq!(compile_err(&proxy).field, "identity.trusted_proxies[0]");
        let braced = EXAMPLE.replace("name = \"hello\"", "name = \"a}b\"");
        assert_eq!(compile_err(&braced).field, "rules[0].name");
        let unknown = format!("shadw = true\n{EXAMPLE}");
        assert!(compile_err(&unknown).message.contains("shadw"));
        let mistyped = EXAMPLE.replace(
            "methods = [\"GET\"]",
            "methods = [\"GET\"]\ncost = \"three\"",
        );
        assert_eq!(compile_err(&mistyped).field, "rules[0].cost");
    }

    #[test]
    fn environment_overrides_reach_nested_fields() {
        let mut table = toml::Value::Table(toml::from_str(EXAMPLE).unwrap());
        apply_override(&mut table, "RULES__0__LIMITS__0__CAPACITY", "20").unwrap();
        apply_override(&mut table, "SHADOW", "true").unwrap();
        apply_override(&mut table, "IDENTITY__CLIENT_IP_HEADER", "CF-Connecting-IP").unwrap();
        let config: Config = table.try_into().unwrap();
        assert!(config.shadow);
        assert_eq!(config.rules[0].limits[0].capacity, Some(20));
        assert_eq!(
            config.identity.client_ip_header.as_deref(),
            Some("CF-Connecting-IP")
        );
        let mut table = toml::Value::Table(toml::from_str(EXAMPLE).unwrap());
        assert!(apply_override(&mut table, "RULES__9__NAME", "x").is_err());
    }
}
