//! Checks a [`Config`] and compiles its rules and limits into [`Settings`].

use super::identity::{compile_exempt, compile_identity};
use super::limits::{compile_limits, same_algorithm_per_name};
use super::schema::{Config, FailureConfig, HeaderStyleConfig, RuleConfig};
use super::{ConfigError, Settings, error};
use crate::FailurePolicy;
use crate::http::headers::HeaderStyle;
use crate::http::rules::{KeyKind, PathPattern, Rule, RuleSet};

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
            if let Some(field) = self.limit_by_user() {
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

impl Config {
    /// The field of the first limit keyed by user, if any.
    fn limit_by_user(&self) -> Option<String> {
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| (format!("rules[{i}]"), rule))
            .chain(self.default.iter().map(|rule| ("default".to_owned(), rule)));
        for (field, rule) in rules {
            let lists = std::iter::once((format!("{field}.limits"), &rule.limits)).chain(
                rule.tiers
                    .iter()
                    .map(|(tier, t)| (format!("{field}.tiers.{tier}.limits"), &t.limits)),
            );
            for (list, limits) in lists {
                if let Some(j) = limits.iter().position(|l| l.key == Some(KeyKind::User)) {
                    return Some(format!("{list}[{j}].key"));
                }
            }
        }
        None
    }
}

/// A non-empty name without braces: it goes into Redis keys before or inside their
/// hash tag (`{prefix}:{rule:caller}:{limit}`), where a brace would move the tag and put
/// every caller of a rule in one Cluster slot.
pub(crate) fn untagged<'s>(field: &str, value: &'s str) -> Result<&'s str, ConfigError> {
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
        count_when: match &rule.count_when {
            Some(statuses) => Some(compile_statuses(&format!("{field}.count_when"), statuses)?),
            None => None,
        },
        penalty: match &rule.penalty {
            Some(penalty) => Some(compile_penalty(&format!("{field}.penalty"), penalty)?),
            None => None,
        },
    })
}

/// `count_when`: status codes (`"401"`) and classes (`"4xx"`).
fn compile_statuses(
    field: &str,
    statuses: &[String],
) -> Result<crate::http::deferred::CountWhen, ConfigError> {
    let mut ranges: Vec<(u16, u16)> = Vec::with_capacity(statuses.len());
    for (i, status) in statuses.iter().enumerate() {
        let text = status.trim().to_ascii_lowercase();
        let range = match text.strip_suffix("xx") {
            Some(class) => class
                .parse::<u16>()
                .ok()
                .filter(|c| (1..=5).contains(c))
                .map(|c| (c * 100, c * 100 + 99)),
            None => text
                .parse::<u16>()
                .ok()
                .filter(|code| (100..=599).contains(code))
                .map(|code| (code, code)),
        };
        let Some(range) = range else {
            return Err(error(
                format!("{field}[{i}]"),
                format!("`{status}` is not a status code (`401`) or class (`4xx`)"),
            ));
        };
        ranges.push(range);
    }
    if ranges.is_empty() {
        return Err(error(
            field,
            "names no status: remove it to count every request",
        ));
    }
    Ok(crate::http::deferred::CountWhen(std::sync::Arc::new(
        move |status: http::StatusCode| {
            let code = status.as_u16();
            ranges
                .iter()
                .any(|(low, high)| (*low..=*high).contains(&code))
        },
    )))
}

fn compile_penalty(
    field: &str,
    config: &super::schema::PenaltyConfig,
) -> Result<crate::http::penalty::Penalty, ConfigError> {
    let penalty = crate::http::penalty::Penalty {
        after: config.after,
        window_ms: config.window_ms.unwrap_or(3_600_000),
        block_ms: config.block_ms,
        max_block_ms: config.max_block_ms.unwrap_or(3_600_000),
    };
    if penalty.after == 0 {
        return Err(error(format!("{field}.after"), "must be at least 1"));
    }
    crate::Policy::fixed(penalty.after, penalty.window_ms)
        .map_err(|e| error(format!("{field}.window_ms"), e))?;
    for (name, ms) in [
        ("block_ms", penalty.block_ms),
        ("max_block_ms", penalty.max_block_ms),
    ] {
        crate::Policy::token_bucket(1, 1, ms).map_err(|e| error(format!("{field}.{name}"), e))?;
    }
    if penalty.max_block_ms < penalty.block_ms {
        return Err(error(
            format!("{field}.max_block_ms"),
            "must be at least block_ms",
        ));
    }
    Ok(penalty)
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
