//! Checks a [`Config`] and compiles its rules and limits into [`Settings`].

use super::identity::{compile_exempt, compile_identity};
use super::rate::{self, Rate};
use super::schema::{
    Config, FailureConfig, HeaderStyleConfig, LimitAlgorithm, LimitConfig, RuleConfig,
};
use super::{ConfigError, Settings, error};
use crate::http::headers::HeaderStyle;
use crate::http::rules::{KeyKind, NamedLimit, PathPattern, Rule, RuleSet};
use crate::{FailurePolicy, Policy};

impl Config {
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
                .find(|(_, rule)| rule.key == Some(KeyKind::User));
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
                .find(|(_, rule)| !rule.tiers.is_empty() && rule.key != Some(KeyKind::Custom));
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
    let key = rule.key.unwrap_or_default();
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
        let (policy, default_name) = compile_policy(&field, limit)?;
        if limits.len() > 1 && matches!(policy, Policy::Throttle(_)) {
            return Err(error(
                format!("{field}.algorithm"),
                "throttle cannot be combined with other limits (RL.ALL takes token_bucket, \
                 sliding, sliding_approx and fixed)",
            ));
        }
        let name = limit.name.clone().unwrap_or(default_name);
        untagged(&format!("{field}.name"), &name)?;
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

/// The policy of one limit, and its default name.
fn compile_policy(field: &str, limit: &LimitConfig) -> Result<(Policy, String), ConfigError> {
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
    let algorithm = limit.algorithm.map(LimitAlgorithm::as_str);
    if let Some(text) = &limit.rate {
        if let Some((name, _)) = given.iter().find(|(_, value)| value.is_some()) {
            return Err(error(
                format!("{field}.{name}"),
                "does not go with `rate`: give the rate or the numbers",
            ));
        }
        let rates: Vec<&str> = rate::split(text).collect();
        let [one] = rates.as_slice() else {
            return Err(error(
                format!("{field}.rate"),
                "holds one rate: write several as `limits = \"5/minute; 100/hour\"`",
            ));
        };
        let rate = Rate::parse(one).map_err(|m| error(format!("{field}.rate"), m))?;
        let policy = rate
            .policy(algorithm)
            .map_err(|(argument, m)| error(format!("{field}.{argument}"), m))?;
        return Ok((policy, rate.name()));
    }
    let Some(algorithm) = algorithm else {
        return Err(error(
            format!("{field}.algorithm"),
            "is required unless the limit has a `rate`",
        ));
    };
    let need = |name: &str, value: Option<u64>| {
        value.ok_or_else(|| {
            error(
                format!("{field}.{name}"),
                format!("is required by {algorithm} (or give a `rate`)"),
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
        match given
            .iter()
            .find(|(name, value)| value.is_some() && !allowed.contains(name))
        {
            Some((name, _)) => Err(error(
                format!("{field}.{name}"),
                format!("does not apply to {algorithm}"),
            )),
            None => Ok(()),
        }
    };
    let policy = match algorithm {
        "token_bucket" => {
            extra(&["capacity", "refill_tokens", "refill_ms"])?;
            Policy::token_bucket(
                need("capacity", limit.capacity)?,
                need("refill_tokens", limit.refill_tokens)?,
                need("refill_ms", limit.refill_ms)?,
            )
        }
        "throttle" => {
            extra(&["max_burst", "count_per_period", "period_s"])?;
            Policy::throttle(
                need("max_burst", limit.max_burst)?,
                need("count_per_period", limit.count_per_period)?,
                need("period_s", limit.period_s)?,
            )
        }
        _ => {
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
        }
    }
    .map_err(named)?;
    Ok((policy, algorithm.to_owned()))
}

#[cfg(all(test, feature = "config"))]
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
}
