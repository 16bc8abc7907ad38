//! [`RateLimiter::verify`](crate::RateLimiter::verify)'s answer: which engine decides,
//! and on which servers the module was found, with its version.

use crate::error::{Error, ErrorKind, Result};
use redis::Value;

/// The module's name as `MODULE LIST` shows it.
pub(crate) const MODULE_NAME: &str = "redlimit";

/// What decides the limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Engine {
    /// The redlimit module on the server(s).
    Module,
    /// This process's memory ([`Backend::memory`](crate::Backend::memory)).
    Memory,
    /// The Lua scripts of [`ServerEngine::Scripts`](crate::ServerEngine::Scripts) (or
    /// [`ServerEngine::Auto`](crate::ServerEngine::Auto) on servers without the module).
    Scripts,
}

/// One server that [`verify`](crate::RateLimiter::verify) found ready.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Its address (`host:port`), or how it was reached when the address is not known
    /// (a connection given ready-made).
    pub address: String,
    /// The module's version as `MODULE LIST` reports it (`ver`); `None` when the server
    /// refused `MODULE LIST` (an ACL without `@admin`) and the module was found by
    /// `COMMAND INFO` instead.
    pub module_version: Option<i64>,
}

/// What [`RateLimiter::verify`](crate::RateLimiter::verify) found: every server it
/// reached has the module.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendInfo {
    /// What decides.
    pub engine: Engine,
    /// The servers checked (none for the memory engine): a single server, the primary
    /// Sentinel names, or every primary of a cluster.
    pub nodes: Vec<NodeInfo>,
}

impl BackendInfo {
    /// The module's version on the first server checked, if known.
    #[must_use]
    pub fn module_version(&self) -> Option<i64> {
        self.nodes.first().and_then(|node| node.module_version)
    }
}

/// What one server says about the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Loaded, with this version (`None`: found by `COMMAND INFO`, version unknown).
    Loaded(Option<i64>),
    /// Not loaded; the modules that are, for the message.
    Missing(Vec<String>),
}

/// Reads a `MODULE LIST` reply: an array of modules, each a RESP3 map or a RESP2 flat
/// array of field/value pairs (`name`, `ver`, `path`, `args`).
pub(crate) fn module_list(reply: &Value) -> Result<Found> {
    let modules = match reply {
        Value::Array(items) | Value::Set(items) => items,
        other => return Err(unexpected("a module list", other)),
    };
    let mut names = Vec::new();
    for module in modules {
        let pairs = crate::protocol::pairs(module)?;
        let get = |field: &str| {
            pairs
                .iter()
                .find(|(name, _)| name == field)
                .map(|(_, value)| *value)
        };
        let name = match get("name") {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(Value::SimpleString(name)) => name.clone(),
            _ => return Err(unexpected("a module name", module)),
        };
        if name == MODULE_NAME {
            let version = get("ver").map(crate::protocol::integer).transpose()?;
            return Ok(Found::Loaded(version));
        }
        names.push(name);
    }
    Ok(Found::Missing(names))
}

/// Reads `COMMAND INFO RL.TOKENBUCKET`: nil for a command the server does not know.
pub(crate) fn command_info(reply: &Value) -> Result<Found> {
    match reply {
        Value::Array(items) => match items.as_slice() {
            [Value::Nil] => Ok(Found::Missing(Vec::new())),
            [Value::Array(_)] => Ok(Found::Loaded(None)),
            _ => Err(unexpected("one command's info", reply)),
        },
        other => Err(unexpected("one command's info", other)),
    }
}

fn unexpected(what: &str, value: &Value) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("expected {what}, the server sent {value:?}"),
    )
}

/// The error naming the servers without the module.
pub(crate) fn missing(nodes: &[(String, Vec<String>)]) -> Error {
    let described: Vec<String> = nodes
        .iter()
        .map(|(node, modules)| match modules.as_slice() {
            [] => node.clone(),
            loaded => format!("{node} (loaded: {})", loaded.join(", ")),
        })
        .collect();
    Error::new(
        ErrorKind::ModuleNotLoaded,
        format!(
            "the redlimit module is not loaded on {}: start the server with \
             --loadmodule /path/to/libredlimit.so (or MODULE LOAD it); until then every \
             decision there is answered by the failure policy",
            described.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn module(name: &str, version: i64) -> Vec<Value> {
        vec![
            bulk("name"),
            bulk(name),
            bulk("ver"),
            Value::Int(version),
            bulk("path"),
            bulk("/x.so"),
            bulk("args"),
            Value::Array(vec![]),
        ]
    }

    #[test]
    fn module_lists_read_the_same_from_resp2_and_resp3() {
        let resp2 = Value::Array(vec![
            Value::Array(module("vectorset", 1)),
            Value::Array(module("redlimit", 7)),
        ]);
        assert_eq!(module_list(&resp2).unwrap(), Found::Loaded(Some(7)));
        let as_map = |fields: Vec<Value>| {
            Value::Map(
                fields
                    .chunks_exact(2)
                    .map(|pair| (pair[0].clone(), pair[1].clone()))
                    .collect(),
            )
        };
        let resp3 = Value::Array(vec![as_map(module("lua", 1))]);
        assert_eq!(
            module_list(&resp3).unwrap(),
            Found::Missing(vec!["lua".to_owned()])
        );
        assert_eq!(
            module_list(&Value::Array(vec![])).unwrap(),
            Found::Missing(vec![])
        );
        assert!(module_list(&bulk("OK")).is_err());
    }

    #[test]
    fn command_info_says_whether_the_command_exists() {
        let absent = Value::Array(vec![Value::Nil]);
        assert_eq!(command_info(&absent).unwrap(), Found::Missing(vec![]));
        let present = Value::Array(vec![Value::Array(vec![bulk("rl.tokenbucket")])]);
        assert_eq!(command_info(&present).unwrap(), Found::Loaded(None));
    }

    #[test]
    fn the_error_names_every_server_without_the_module() {
        let error = missing(&[
            ("127.0.0.1:7001".to_owned(), vec!["vectorset".to_owned()]),
            ("127.0.0.1:7002".to_owned(), vec![]),
        ]);
        assert!(error.is_module_not_loaded());
        let text = error.to_string();
        assert!(
            text.contains(
                "the redlimit module is not loaded on 127.0.0.1:7001 (loaded: vectorset), \
                 127.0.0.1:7002: start the server with --loadmodule"
            ),
            "{text}"
        );
    }
}
