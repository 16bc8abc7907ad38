//! Sending one call with the backend's engine: the `RL.*` command as it is, or the
//! script call it translates to (`EVALSHA`, then `EVAL` after `NOSCRIPT`).

use super::ServerEngine;
use super::scripts::{self, ScriptCall};
use crate::backend::{Asker, Connection, Remote, send};
use crate::verify::{self, Found};
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{Cmd, RedisError, RedisResult, Value};

/// Sends `cmd` (an `RL.*` command) on `connection` with `remote`'s engine; in a cluster,
/// to the primary of `slot` when given (the script call goes to its own first key's slot,
/// the same one whenever the keys have hash tags).
pub(crate) async fn dispatch(
    remote: &Remote,
    connection: Connection,
    cmd: &Cmd,
    slot: Option<u16>,
) -> RedisResult<Value> {
    let scripts = match remote.engine.uses_scripts() {
        Some(scripts) => scripts,
        None => {
            // Boxed (as the script calls below): rare paths, kept out of the future of
            // every call.
            let module = match Box::pin(has_module(connection.clone())).await {
                Ok(module) => module,
                Err(error) if error.is_io_error() || error.is_timeout() => return Err(error),
                // The server refuses the question (an ACL without COMMAND, a proxy): the
                // RL.* command itself tells, `unknown command` sending it to the scripts.
                Err(_) => true,
            };
            remote.engine.found_module(module, &remote.node_name());
            !module
        }
    };
    if scripts {
        return Box::pin(run_script(connection, cmd)).await;
    }
    if remote.engine.choice() != ServerEngine::Auto {
        return send(connection, cmd, slot).await;
    }
    let result = send(connection.clone(), cmd, slot).await;
    if is_unknown_command(&result) {
        // A node without the module took over (a failover, a resharding): the scripts
        // decide from now on, until the next connection asks again.
        remote.engine.found_module(false, &remote.node_name());
        return Box::pin(run_script(connection, cmd)).await;
    }
    result
}

/// The script call of `cmd`, loading the script when the server does not have it.
async fn run_script(connection: Connection, cmd: &Cmd) -> RedisResult<Value> {
    let call = scripts::translate(cmd, None).map_err(|detail| {
        RedisError::from((
            redis::ErrorKind::ClientError,
            "no script for this command",
            detail,
        ))
    })?;
    run_call(connection, &call).await
}

/// Runs `call`: `EVALSHA`, and `EVAL` (which loads it) after `NOSCRIPT`.
async fn run_call(connection: Connection, call: &ScriptCall) -> RedisResult<Value> {
    let slot = call.slot();
    match send(connection.clone(), &call.evalsha(), slot).await {
        Ok(Value::ServerError(error)) if error.code() == "NOSCRIPT" => {
            send(connection, &call.eval(), slot).await
        }
        Err(error) if error.kind() == redis::ErrorKind::NoScriptError => {
            send(connection, &call.eval(), slot).await
        }
        other => other,
    }
}

/// Whether the server said it does not know the command.
fn is_unknown_command(result: &RedisResult<Value>) -> bool {
    let detail = match result {
        Ok(Value::ServerError(error)) if error.code() == "ERR" => error.details(),
        Err(error) if error.code() == Some("ERR") => error.detail(),
        _ => None,
    };
    detail.is_some_and(|detail| {
        let detail = detail.trim_start().to_ascii_lowercase();
        detail.starts_with("unknown command") || detail.starts_with("unsupported command")
    })
}

/// `COMMAND INFO RL.TOKENBUCKET` on the server, or on every primary of a cluster: true
/// when all of them know it.
async fn has_module(connection: Connection) -> RedisResult<bool> {
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("INFO").arg("RL.TOKENBUCKET");
    let read = |reply: &Value| -> RedisResult<bool> {
        match verify::command_info(reply) {
            Ok(Found::Loaded(_)) => Ok(true),
            Ok(Found::Missing(_)) => Ok(false),
            Err(error) => Err(RedisError::from((
                redis::ErrorKind::TypeError,
                "unreadable COMMAND INFO reply",
                error.to_string(),
            ))),
        }
    };
    match connection {
        Connection::Multiplexed(connection) => {
            let reply = Asker::One(connection).send(&cmd).await?.extract_error()?;
            read(&reply)
        }
        Connection::Cluster(mut connection) => {
            let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let reply = connection.route_command(&cmd, routing).await?;
            let Value::Map(nodes) = reply else {
                return read(&reply.extract_error()?);
            };
            for (_, reply) in nodes {
                if !read(&reply.extract_error()?)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
    }
}

/// `value`, or the first error reply in it (as [`Value::extract_error`]), without
/// rebuilding a reply that holds none (the usual case: decisions are integers).
pub(crate) fn without_errors(value: Value) -> crate::error::Result<Value> {
    fn holds_error(value: &Value) -> bool {
        match value {
            Value::ServerError(_) => true,
            // Scalars answered without a call each (a decision is five integers).
            Value::Array(items) | Value::Set(items) | Value::Push { data: items, .. } => {
                items.iter().any(|item| match item {
                    Value::Int(_) | Value::Nil | Value::Okay | Value::BulkString(_) => false,
                    other => holds_error(other),
                })
            }
            Value::Map(pairs) => pairs.iter().any(|(k, v)| holds_error(k) || holds_error(v)),
            Value::Attribute { data, attributes } => {
                holds_error(data)
                    || attributes
                        .iter()
                        .any(|(k, v)| holds_error(k) || holds_error(v))
            }
            _ => false,
        }
    }
    if holds_error(&value) {
        Ok(value.extract_error()?)
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(detail: &str) -> Value {
        redis::parse_redis_value(format!("-ERR {detail}\r\n").as_bytes()).unwrap()
    }

    #[test]
    fn error_replies_anywhere_are_errors_as_extract_error_finds_them() {
        let ints = Value::Array((1..=5).map(Value::Int).collect());
        let replies = [
            ints.clone(),
            error("top"),
            Value::Array(vec![Value::Int(1), error("in an array")]),
            Value::Array(vec![ints.clone(), Value::Array(vec![error("nested")])]),
            Value::Map(vec![(Value::Int(1), error("in a map"))]),
            Value::Attribute {
                data: Box::new(ints.clone()),
                attributes: vec![(error("in attributes"), Value::Nil)],
            },
            Value::Set(vec![Value::Okay, error("first"), error("second")]),
        ];
        for reply in replies {
            let ours = without_errors(reply.clone()).map_err(|e| e.to_string());
            let theirs = reply
                .extract_error()
                .map_err(|e| crate::Error::from(e).to_string());
            assert_eq!(ours, theirs);
        }
        assert_eq!(without_errors(ints.clone()).unwrap(), ints);
    }
}
