//! Environment overrides: `REDLIMIT__<PATH>=<value>` sets the field at that path of the
//! file. Rules and limits are named, not numbered (`REDLIMIT__RULES__login__FAILURE`,
//! `REDLIMIT__RULES__api__LIMITS__burst__CAPACITY`): reordering the file moves nothing.
//! Keys match case-insensitively, `-` and `_` alike (shells allow no `-` in names).
//!
//! The value's type follows the field: text fields take the value as is
//! (`REDLIMIT__KEY_PREFIX=2024` is the string `2024`); list fields take commas
//! (`10.0.0.0/8, 192.168.0.0/16`) or a TOML array; other fields a TOML value (`true`,
//! `20`). Setting one of two exclusive fields (`secret` / `secret_env`) drops the other.

use toml::Value;

/// What a field holds, for reading its override.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Text,
    List,
    /// A TOML value (number, boolean); text when it does not parse.
    Other,
}

/// Fields of a rule (`[[rules]]`, `[default]`) read as text or lists.
fn rule_shape(field: &str) -> Shape {
    match field {
        "name" | "path" | "key" | "failure" | "limits" => Shape::Text,
        "methods" | "count_when" => Shape::List,
        _ => Shape::Other,
    }
}

/// The shape of the field at `path` (schema field names; named elements as `*`).
fn shape(path: &[&str]) -> Shape {
    match path {
        ["key_prefix" | "headers" | "failure"] => Shape::Text,
        ["identity", "trusted_proxies"] | ["exempt", _] => Shape::List,
        ["identity", "ipv6_prefix"] => Shape::Other,
        ["identity", _] | ["identity", "jwt", _] => Shape::Text,
        [
            "rules",
            "*",
            ..,
            "limits",
            "*",
            "name" | "algorithm" | "rate" | "key",
        ]
        | [
            "default",
            ..,
            "limits",
            "*",
            "name" | "algorithm" | "rate" | "key",
        ] => Shape::Text,
        ["rules", "*", field] | ["default", field] => rule_shape(field),
        _ => Shape::Other,
    }
}

/// Fields of which only one may be given: setting one drops the other.
const EXCLUSIVE: [(&str, &str); 1] = [("secret", "secret_env")];

fn same_key(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    norm(a) == norm(b)
}

/// The element of a `rules` or `limits` array named `name` (a limit without a name is
/// known by its algorithm).
fn named<'v>(
    items: &'v mut [Value],
    list: &str,
    name: &str,
) -> Result<(usize, &'v mut Value), String> {
    let element_name = |item: &Value| -> Option<String> {
        let table = item.as_table()?;
        table
            .get("name")
            .or_else(|| table.get("algorithm"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let names: Vec<String> = items.iter().filter_map(element_name).collect();
    let found = items
        .iter()
        .position(|item| element_name(item).is_some_and(|n| same_key(&n, name)));
    match found.and_then(|i| Some((i, items.get_mut(i)?))) {
        Some(found) => Ok(found),
        None => Err(format!(
            "`{name}`: {list} are named in overrides ({}__<name>__...), and none is named so \
             (named: {})",
            list.to_ascii_uppercase(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )),
    }
}

/// The entry `key` of `table`, matched case-insensitively; created (lower case) if absent.
fn entry<'t>(table: &'t mut toml::Table, key: &str) -> &'t mut Value {
    let existing = table.keys().find(|k| same_key(k, key)).cloned();
    let key = existing.unwrap_or_else(|| key.to_ascii_lowercase());
    table
        .entry(key)
        .or_insert_with(|| Value::Table(toml::Table::new()))
}

/// Sets the value at `path` (`RULES__login__LIMITS__burst__CAPACITY`); returns the
/// field it set (`rules[0].limits[0].capacity`).
pub(super) fn apply_override(root: &mut Value, path: &str, raw: &str) -> Result<String, String> {
    let parts: Vec<&str> = path.split("__").collect();
    let Some((last, walk)) = parts.split_last() else {
        return Err("is empty".to_owned());
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err("has an empty part (`____`)".to_owned());
    }
    let mut schema: Vec<String> = Vec::with_capacity(parts.len());
    let mut reached = String::new();
    let mut node = root;
    for part in walk {
        node = match node {
            Value::Table(table) => {
                schema.push(part.to_ascii_lowercase());
                if !reached.is_empty() {
                    reached.push('.');
                }
                reached.push_str(&part.to_ascii_lowercase());
                entry(table, part)
            }
            Value::Array(items) => {
                let list = schema.last().map_or("elements", String::as_str).to_owned();
                schema.push("*".to_owned());
                let (index, item) = named(items, &list, part)?;
                reached.push_str(&format!("[{index}]"));
                item
            }
            _ => return Err(format!("`{part}` is inside a plain value")),
        };
    }
    let Value::Table(table) = node else {
        return Err(format!("`{last}` is inside a list or a plain value"));
    };
    let field = last.to_ascii_lowercase();
    schema.push(field.clone());
    let schema: Vec<&str> = schema.iter().map(String::as_str).collect();
    let value = read(shape(&schema), raw);
    for (a, b) in EXCLUSIVE {
        let other = if field == a {
            b
        } else if field == b {
            a
        } else {
            continue;
        };
        table.retain(|k, _| !same_key(k, other));
    }
    let key = table
        .keys()
        .find(|k| same_key(k, &field))
        .cloned()
        .unwrap_or(field);
    if !reached.is_empty() {
        reached.push('.');
    }
    reached.push_str(&key);
    table.insert(key, value);
    Ok(reached)
}

/// The raw text as a value of `shape`.
fn read(shape: Shape, raw: &str) -> Value {
    match shape {
        Shape::Text => Value::String(raw.to_owned()),
        Shape::List if raw.trim_start().starts_with('[') => toml_value(raw),
        Shape::List => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Value::String(item.to_owned()))
                .collect(),
        ),
        Shape::Other => toml_value(raw),
    }
}

/// The raw text as a TOML value (number, boolean, array), else as a string.
fn toml_value(raw: &str) -> Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Config;

    const EXAMPLE: &str = r#"
        key_prefix = "rl"
        [[rules]]
        name = "hello"
        path = "/api/hello"
        methods = ["GET"]
        limits = [{ name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 1000 }]

        [[rules]]
        name = "per-minute-login"
        path = "/login"
        limits = "5/minute; 100/hour"

        [identity.jwt]
        secret_env = "SOME_VAR"
    "#;

    fn with(overrides: &[(&str, &str)]) -> Result<Config, String> {
        let mut table = Value::Table(toml::from_str(EXAMPLE).unwrap());
        for (path, raw) in overrides {
            apply_override(&mut table, path, raw)?;
        }
        table.try_into().map_err(|e: toml::de::Error| e.to_string())
    }

    #[test]
    fn rules_and_limits_are_reached_by_name() {
        let config = with(&[
            ("RULES__hello__LIMITS__BURST__CAPACITY", "20"),
            ("RULES__PER_MINUTE_LOGIN__FAILURE", "closed"),
            ("SHADOW", "true"),
            ("IDENTITY__CLIENT_IP_HEADER", "CF-Connecting-IP"),
        ])
        .unwrap();
        assert!(config.shadow);
        assert_eq!(config.rules[0].limits[0].capacity, Some(20));
        assert_eq!(
            config.rules[1].failure,
            Some(crate::http::FailureConfig::Closed)
        );
        assert_eq!(
            config.identity.client_ip_header.as_deref(),
            Some("CF-Connecting-IP")
        );
        let mut table = Value::Table(toml::from_str(EXAMPLE).unwrap());
        let reached = apply_override(&mut table, "RULES__HELLO__LIMITS__BURST__CAPACITY", "3");
        assert_eq!(reached.unwrap(), "rules[0].limits[0].capacity");
        let error = with(&[("RULES__0__NAME", "x")]).unwrap_err();
        assert!(error.contains("hello, per-minute-login"), "{error}");
        assert!(with(&[("RULES__hello__LIMITS__0__CAPACITY", "1")]).is_err());
    }

    #[test]
    fn values_take_the_shape_of_their_field() {
        let config = with(&[
            ("KEY_PREFIX", "2024"),
            ("IDENTITY__TRUSTED_PROXIES", "10.0.0.0/8, 192.168.0.0/16"),
            ("EXEMPT__USERS", "[\"ops\"]"),
            ("RULES__hello__METHODS", "get,post"),
            ("RULES__per-minute-login__LIMITS", "1/second"),
            ("IDENTITY__JWT__SECRET", "0123456789abcdef0123"),
        ])
        .unwrap();
        assert_eq!(config.key_prefix, "2024");
        assert_eq!(
            config.identity.trusted_proxies,
            ["10.0.0.0/8", "192.168.0.0/16"]
        );
        assert_eq!(config.exempt.users, ["ops"]);
        assert_eq!(config.rules[0].methods, ["get", "post"]);
        assert_eq!(config.rules[1].limits.len(), 1);
        let jwt = config.identity.jwt.unwrap();
        assert_eq!(jwt.secret.as_deref(), Some("0123456789abcdef0123"));
        assert_eq!(
            jwt.secret_env, None,
            "the override replaces the file's secret_env"
        );
    }
}
