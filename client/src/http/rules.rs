//! Compiled rules: which requests a rule covers, whose key counts, which limits apply.

use super::caller::{Caller, Identity};
use crate::{FailurePolicy, Policy};
use http::Method;
use ipnet::IpNet;
use std::net::IpAddr;

/// A path pattern: literal segments, `*` for exactly one segment, and a final `**`
/// for any rest (zero or more segments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    /// The segments joined by `/` when all are non-empty literals: such a pattern
    /// matches by one comparison (derived from `segments`).
    literal: Option<Box<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

impl PathPattern {
    /// Parses `/api/*/items/**`, or in axum's syntax `/api/{id}/items/{*rest}`.
    ///
    /// # Errors
    /// A pattern not starting with `/`, or `**` before the end.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let Some(rest) = pattern.strip_prefix('/') else {
            return Err(format!("`{pattern}` must start with `/`"));
        };
        let mut parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        // A trailing slash names the same resource, as in requests (`/api/login/`).
        if parts.len() > 1 && parts.last() == Some(&"") {
            parts.pop();
        }
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            // axum's own syntax too: `{id}` is one segment, a final `{*rest}` any rest.
            let capture = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
            let kind = match capture {
                Some(name) if name.starts_with('*') => "**",
                Some(_) => "*",
                None => part,
            };
            segments.push(match kind {
                "**" if i + 1 == parts.len() => Segment::Rest,
                "**" => return Err(format!("`{pattern}`: `**` may only end a pattern")),
                "*" => Segment::One,
                literal => Segment::Literal(literal.to_owned()),
            });
        }
        let literal = (!segments.is_empty())
            .then(|| {
                segments
                    .iter()
                    .map(|segment| match segment {
                        Segment::Literal(literal) if !literal.is_empty() => Some(literal.as_str()),
                        _ => None,
                    })
                    .collect::<Option<Vec<&str>>>()
            })
            .flatten()
            .map(|literals| literals.join("/").into_boxed_str());
        Ok(Self { segments, literal })
    }

    /// Whether `path` matches.
    #[must_use]
    pub fn matches(&self, path: &str) -> bool {
        let rest = path.strip_prefix('/').unwrap_or(path);
        // Literals hold no `/`: splitting the path and comparing segment by segment is
        // comparing it whole (without one trailing slash).
        if let Some(literal) = &self.literal {
            return !rest.is_empty() && rest.strip_suffix('/').unwrap_or(rest) == &**literal;
        }
        self.matches_segments(rest)
    }

    /// [`matches`](Self::matches) segment by segment; `rest` is the path without its
    /// leading `/`.
    fn matches_segments(&self, rest: &str) -> bool {
        // A trailing slash names the same resource: `a/` is `a`, and `/` alone is one
        // empty segment. (No segments at all for an empty rest.)
        let mut parts = (!rest.is_empty())
            .then(|| rest.strip_suffix('/').unwrap_or(rest).split('/'))
            .into_iter()
            .flatten();
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::One => {
                    if parts.next().is_none_or(str::is_empty) {
                        return false;
                    }
                }
                Segment::Literal(literal) => {
                    if parts.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

/// Whose requests count together (`key` in the configuration).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// The client IP (IPv6 grouped by prefix).
    #[default]
    Ip,
    /// The API key header, else the client IP.
    ApiKey,
    /// The verified JWT's user, else the client IP.
    User,
    /// The application's [`Identify`](super::Identify), else the client IP.
    Custom,
}

/// One named limit of a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedLimit {
    /// Its name in headers, bodies and Redis keys.
    pub name: String,
    /// Its policy.
    pub policy: Policy,
    /// Whose requests it counts, when not the rule's `key`.
    pub(crate) key: Option<KeyKind>,
    /// Its parts of the rate-limit headers, rendered once.
    pub(crate) header: super::headers::LimitHeader,
}

impl NamedLimit {
    pub(crate) fn new(name: String, policy: Policy, key: Option<KeyKind>) -> Self {
        Self {
            header: super::headers::LimitHeader::new(&name, &policy),
            name,
            policy,
            key,
        }
    }
}

/// One rule.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Its name in metrics, logs and Redis keys.
    pub name: String,
    pub(crate) methods: Vec<Method>,
    pub(crate) path: Option<PathPattern>,
    pub(crate) key: KeyKind,
    pub(crate) cost: u64,
    pub(crate) shadow: bool,
    pub(crate) failure: Option<FailurePolicy>,
    /// Limits by tier name; the caller's tier picks, else `default_limits`.
    pub(crate) tiers: Vec<(String, Vec<NamedLimit>)>,
    pub(crate) default_limits: Vec<NamedLimit>,
    /// Count only responses whose status it accepts (peek before, count after).
    pub(crate) count_when: Option<super::deferred::CountWhen>,
    /// Progressive penalties for repeat offenders.
    pub(crate) penalty: Option<super::penalty::Penalty>,
}

impl Rule {
    /// A rule written in code: every route it is attached to, per IP, cost 1.
    pub(crate) fn in_code(name: &str, limits: Vec<NamedLimit>) -> Self {
        Self {
            name: name.to_owned(),
            methods: Vec::new(),
            path: None,
            key: KeyKind::Ip,
            cost: 1,
            shadow: false,
            failure: None,
            tiers: Vec::new(),
            default_limits: limits,
            count_when: None,
            penalty: None,
        }
    }

    fn covers(&self, method: &Method, path: &str) -> bool {
        self.covers_method(method) && self.path.as_ref().is_none_or(|p| p.matches(path))
    }

    /// A rule for GET covers HEAD too: servers (axum's `get` among them) answer HEAD
    /// with the GET handler, doing the same work.
    fn covers_method(&self, method: &Method) -> bool {
        self.methods.is_empty()
            || self.methods.contains(method)
            || (method == Method::HEAD && self.methods.contains(&Method::GET))
    }

    /// The index of `tier` among this rule's tiers, if it has its own limits.
    pub(crate) fn tier_index(&self, tier: Option<&str>) -> Option<usize> {
        tier.and_then(|tier| self.tiers.iter().position(|(name, _)| name == tier))
    }

    /// The limits of the tier at `index`, else the default limits.
    pub(crate) fn limits_at(&self, index: Option<usize>) -> &[NamedLimit] {
        index
            .and_then(|i| self.tiers.get(i))
            .map_or(&self.default_limits, |(_, limits)| limits)
    }
}

/// Who is never limited.
#[derive(Clone, Debug, Default)]
pub struct Exemptions {
    pub(crate) paths: Vec<PathPattern>,
    pub(crate) nets: Vec<IpNet>,
    pub(crate) users: Vec<String>,
    pub(crate) api_keys: Vec<String>,
}

impl Exemptions {
    pub(crate) fn path(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p.matches(path))
    }

    pub(crate) fn caller(&self, caller: &Caller) -> bool {
        caller
            .ip
            .is_some_and(|ip: IpAddr| self.nets.iter().any(|net| net.contains(&ip)))
            || caller
                .user
                .as_ref()
                .is_some_and(|user| self.users.contains(user))
            || caller
                .api_key
                .as_ref()
                .is_some_and(|key| self.api_keys.contains(key))
    }
}

/// The rules of a configuration, in order, and the default rule.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<Rule>,
    pub(crate) default: Option<Rule>,
}

impl RuleSet {
    /// The first rule covering `method` and `path`, else the default rule.
    #[cfg(test)]
    pub(crate) fn find(&self, method: &Method, path: &str) -> Option<&Rule> {
        self.find_indexed(method, path).map(|(_, rule)| rule)
    }

    /// The names of the rules, the default rule's included.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .chain(self.default.as_ref())
            .map(|rule| rule.name.as_str())
    }

    /// [`find`](Self::find) with the rule's index for [`get`](Self::get).
    pub(crate) fn find_indexed(&self, method: &Method, path: &str) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.covers(method, path))
            .or_else(|| self.default.as_ref().map(|rule| (self.rules.len(), rule)))
    }

    /// The rule at `index` (the default rule after the others).
    pub(crate) fn get(&self, index: usize) -> Option<&Rule> {
        self.rules.get(index).or_else(|| {
            (index == self.rules.len())
                .then_some(self.default.as_ref())
                .flatten()
        })
    }
}

/// The Redis key of `limit` of `rule` for `identity`: all limits of one rule and caller
/// share a hash tag, so one `RL.ALL` works in Redis Cluster too.
pub(crate) fn redis_key(prefix: &str, rule: &str, identity: &Identity, limit: &str) -> String {
    let who = identity.key.as_str();
    let mut key = String::with_capacity(prefix.len() + rule.len() + who.len() + limit.len() + 5);
    for part in [prefix, ":{", rule, ":", who, "}:", limit] {
        key.push_str(part);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_patterns_match_as_segment_by_segment() {
        let paths = [
            "",
            "/",
            "//",
            "/api",
            "/api/",
            "/api//",
            "/api/hello",
            "/api/hello/",
            "/api/hello//",
            "/api/hello/x",
            "/api/hell",
            "api/hello",
            "/apihello",
            "/api//hello",
            "/API/hello",
            "/api/hello/x/",
        ];
        for pattern in ["/api", "/api/", "/api/hello", "/api/hello/", "/a/b/c"] {
            let p = PathPattern::parse(pattern).unwrap();
            assert!(p.literal.is_some(), "{pattern}");
            for path in paths {
                let rest = path.strip_prefix('/').unwrap_or(path);
                assert_eq!(
                    p.matches(path),
                    p.matches_segments(rest),
                    "{pattern} on {path:?}"
                );
            }
        }
        for pattern in ["/", "/api//x", "/api/*", "/api/**"] {
            assert!(
                PathPattern::parse(pattern).unwrap().literal.is_none(),
                "{pattern}"
            );
        }
    }

    #[test]
    fn patterns_match_segments_wildcards_and_rests() {
        let p = |s| PathPattern::parse(s).unwrap();
        assert!(p("/api/hello").matches("/api/hello"));
        assert!(p("/api/hello").matches("/api/hello/"));
        assert!(!p("/api/hello").matches("/api/hello/x"));
        assert!(!p("/api/hello").matches("/api/hell"));
        assert!(p("/api/*/items").matches("/api/7/items"));
        assert!(!p("/api/*/items").matches("/api//items"));
        assert!(!p("/api/*").matches("/api/7/items"));
        assert!(p("/api/**").matches("/api"));
        assert!(p("/api/**").matches("/api/7/items"));
        assert!(!p("/api/**").matches("/apix"));
        assert!(p("/").matches("/"));
        assert!(p("/api/hello/").matches("/api/hello"));
        assert!(p("/api/hello/").matches("/api/hello/"));
        assert!(!p("/api/hello/").matches("/api/hello/x"));
        assert!(p("/**").matches("/anything/at/all"));
        assert!(p("/api/items/{id}").matches("/api/items/7"));
        assert!(!p("/api/items/{id}").matches("/api/items/7/x"));
        assert!(p("/files/{*path}").matches("/files/a/b/c"));
        assert!(PathPattern::parse("/{*path}/x").is_err());
        assert!(PathPattern::parse("api").is_err());
        assert!(PathPattern::parse("/a/**/b").is_err());
        // Empty segments: `//` is one empty segment after the root's.
        assert!(p("/").matches(""));
        assert!(!p("/").matches("//"));
        assert!(p("/*/x").matches("/a/x/"));
        assert!(!p("/*").matches("//"));
    }

    #[test]
    fn keys_put_the_rule_and_caller_in_the_hash_tag() {
        let identity = Identity {
            key: "ip:192.0.2.1".into(),
            tier: None,
        };
        assert_eq!(
            redis_key("rl", "login", &identity, "burst"),
            "rl:{login:ip:192.0.2.1}:burst"
        );
        assert_eq!(
            redis_key("rl", "login", &identity, ""),
            "rl:{login:ip:192.0.2.1}:"
        );
    }
}
