//! The configuration of the middleware: its shape ([`schema`]), read from TOML with
//! `REDLIMIT__*` environment overrides ([`env`], feature `config`), and checked and
//! compiled into [`Settings`] ([`compile`]) with errors naming the bad field.

mod compile;
#[cfg(feature = "config")]
mod env;
mod identity;
mod limits;

pub(crate) use compile::untagged;
pub(crate) use limits::from_rates;
mod rate;
mod schema;

pub use schema::{
    Config, ExemptConfig, FailureConfig, HeaderStyleConfig, IdentityConfig, JwtConfig,
    LimitAlgorithm, LimitConfig, PenaltyConfig, RuleConfig, TierConfig,
};

use super::caller::CallerResolver;
use super::headers::HeaderStyle;
use super::rules::{Exemptions, RuleSet};
use std::fmt;
use std::sync::{Arc, RwLock};

/// A configuration that cannot be used, naming the field at fault; displayed as
/// `file: field: message` (`ratelimit.toml: rules[1].limits[0].capacity: must be at
/// least 1`), or `field: message` when no file was read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConfigError {
    /// The file read by [`Config::load`], if any.
    pub file: Option<String>,
    /// Where: `rules[1].limits[0].capacity`, an environment variable, or the file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

pub(crate) fn error(field: impl Into<String>, message: impl fmt::Display) -> ConfigError {
    ConfigError {
        file: None,
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
/// `REDLIMIT__RULES__login__LIMITS__burst__CAPACITY=20` (rules and limits by name),
/// `REDLIMIT__IDENTITY__TRUSTED_PROXIES=10.0.0.0/8,192.168.0.0/16`.
pub const ENV_PREFIX: &str = "REDLIMIT__";

#[cfg(feature = "config")]
impl Config {
    /// Parses and checks TOML text: what it returns compiles
    /// ([`compile`](Self::compile) is what the layer runs).
    ///
    /// # Errors
    /// Invalid TOML, an unknown or mistyped field, or an invalid value, named
    /// (`rules[0].cost`).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config = Self::from_table(parse(text)?)?;
        config.compile()?;
        Ok(config)
    }

    /// Reads `path`, applies the `REDLIMIT__*` environment overrides, parses and
    /// checks: a bad field stops the program here, named with the file
    /// (`ratelimit.toml: rules[0].limits[0].capacity: ...`).
    ///
    /// # Errors
    /// An unreadable file, invalid TOML, a bad override, field or value, named.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| error(&file, e))?;
        let in_file = |mut e: ConfigError| {
            e.file = Some(file.clone());
            e
        };
        let mut value = toml::Value::Table(parse(&text).map_err(in_file)?);
        let mut overrides: Vec<(String, String)> = std::env::vars()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        // In a stable order: two variables reaching one field always end the same way.
        overrides.sort();
        let mut reached: Vec<(String, String)> = Vec::with_capacity(overrides.len());
        for (name, raw) in overrides {
            let path = name.get(ENV_PREFIX.len()..).unwrap_or_default();
            let field = env::apply_override(&mut value, path, &raw)
                .map_err(|message| in_file(error(&name, message)))?;
            // Two variables for one field (`RULES__API__...` and `RULES__api__...`):
            // which one wins would be an accident.
            if let Some((other, _)) = reached.iter().find(|(_, f)| *f == field) {
                return Err(in_file(error(
                    &name,
                    format!("sets `{field}` as {other} does: keep one"),
                )));
            }
            reached.push((name, field));
        }
        let config = match value {
            toml::Value::Table(table) => Self::from_table(table),
            _ => Err(error("config", "is not a table")),
        }
        .map_err(in_file)?;
        config.compile().map_err(in_file)?;
        Ok(config)
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
