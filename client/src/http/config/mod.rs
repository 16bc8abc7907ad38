//! The configuration of the middleware: its shape ([`schema`]), read from TOML with
//! `REDLIMIT__*` environment overrides ([`env`], feature `config`), and checked and
//! compiled into [`Settings`] ([`compile`]) with errors naming the bad field.

mod compile;
#[cfg(feature = "config")]
mod env;
mod identity;
mod schema;

pub use schema::{
    Config, ExemptConfig, FailureConfig, HeaderStyleConfig, IdentityConfig, JwtConfig, LimitConfig,
    RuleConfig, TierConfig,
};

use super::caller::CallerResolver;
use super::headers::HeaderStyle;
use super::rules::{Exemptions, RuleSet};
use std::fmt;
use std::sync::{Arc, RwLock};

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

pub(crate) fn error(field: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError {
        field: field.into(),
        message: message.to_string(),
    }
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

/// The settings in force, swapped whole by a reload.
pub(crate) type SharedSettings = Arc<RwLock<Arc<Settings>>>;

/// The environment variable prefix of overrides: `REDLIMIT__SHADOW=true`,
/// `REDLIMIT__RULES__0__LIMITS__0__CAPACITY=20`, `REDLIMIT__IDENTITY__JWT__SECRET=...`.
pub const ENV_PREFIX: &str = "REDLIMIT__";

#[cfg(feature = "config")]
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
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| error(path.display().to_string(), e))?;
        let mut value = toml::Value::Table(parse(&text)?);
        for (name, raw) in std::env::vars() {
            if let Some(path) = name.strip_prefix(ENV_PREFIX) {
                env::apply_override(&mut value, path, &raw)
                    .map_err(|message| error(&name, message))?;
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
}

/// TOML syntax, with the line and column.
#[cfg(feature = "config")]
fn parse(text: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| error("config", e.to_string().trim_end()))
}
