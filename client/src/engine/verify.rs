//! [`RateLimiter::verify`](crate::RateLimiter::verify) with an engine: the module on
//! every server, or the script loaded on every server.

use super::{ServerEngine, scripts};
use crate::backend::{Connection, Remote, within};
use crate::error::{Error, ErrorKind, Result};
use crate::verify::{Engine, NodeInfo};
use redis::Value;
use redis::aio::ConnectionLike;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use std::time::Duration;

/// What decides on `remote`'s servers, and which servers were checked: the module
/// (`Module`, or `Auto` where every server has it), else the scripts, loaded now.
pub(crate) async fn verify(remote: &Remote, timeout: Duration) -> Result<(Engine, Vec<NodeInfo>)> {
    match remote.engine.choice() {
        ServerEngine::Module => Ok((Engine::Module, remote.verify(timeout).await?)),
        ServerEngine::Scripts => Ok((Engine::Scripts, load(remote, timeout).await?)),
        ServerEngine::Auto => match remote.verify(timeout).await {
            Ok(nodes) => {
                remote.engine.found_module(true, &remote.node_name());
                Ok((Engine::Module, nodes))
            }
            Err(error) if error.is_module_not_loaded() => {
                remote.engine.found_module(false, &remote.node_name());
                Ok((Engine::Scripts, load(remote, timeout).await?))
            }
            Err(error) => Err(error),
        },
    }
}

/// `SCRIPT LOAD` of the script on the server, or on every primary of a cluster.
async fn load(remote: &Remote, timeout: Duration) -> Result<Vec<NodeInfo>> {
    let mut cmd = redis::cmd("SCRIPT");
    cmd.arg("LOAD").arg(scripts::SOURCE);
    let (connection, _) = remote.connect(timeout).await?;
    let check = |reply: Value, node: String| -> Result<NodeInfo> {
        let reply = reply.extract_error()?;
        let sha: String = redis::from_redis_value(&reply)?;
        if sha != scripts::sha1() {
            return Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "{node} loaded the script as {sha}, expected {}",
                    scripts::sha1()
                ),
            ));
        }
        Ok(NodeInfo {
            address: node,
            module_version: None,
        })
    };
    match connection {
        Connection::Multiplexed(mut connection) => {
            let reply = within(timeout, connection.req_packed_command(&cmd)).await?;
            Ok(vec![check(reply, remote.node_name())?])
        }
        Connection::Cluster(mut connection) => {
            let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
            let reply = within(timeout, connection.route_command(&cmd, routing)).await?;
            match reply {
                Value::Map(nodes) => nodes
                    .into_iter()
                    .map(|(address, reply)| {
                        let address = match address {
                            Value::BulkString(bytes) => {
                                String::from_utf8_lossy(&bytes).into_owned()
                            }
                            other => format!("{other:?}"),
                        };
                        check(reply, address)
                    })
                    .collect(),
                other => Ok(vec![check(other, remote.node_name())?]),
            }
        }
    }
}
