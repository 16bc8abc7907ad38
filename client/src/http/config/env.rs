//! Environment overrides: `REDLIMIT__<PATH>=<value>` sets the field at that path.

/// Sets the value at `path` (`RULES__0__LIMITS__0__CAPACITY`, case-insensitive keys).
pub(super) fn apply_override(root: &mut toml::Value, path: &str, raw: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Config;

    const EXAMPLE: &str = r#"
        [[rules]]
        name = "hello"
        path = "/api/hello"
        methods = ["GET"]
        limits = [{ name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 1000 }]
    "#;

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
