//! Where limiter state lives: a Redis server (single, Sentinel-managed or Cluster) with
//! the redlimit module, or this process's memory.

use crate::engine::{EngineState, ServerEngine};
use crate::error::{Error, Result};
use crate::slot;
use crate::verify::{self, Found, NodeInfo};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, Value};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Where limiter state lives. Connections are made lazily, on the first decision, and
/// made again after a connection error, so a limiter can be built while Redis is down.
///
/// ```no_run
/// # fn main() -> Result<(), redlimit::Error> {
/// use redlimit::Backend;
/// let single = Backend::redis("redis://127.0.0.1:6379")?;
/// let cluster = Backend::cluster(["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"])?;
/// let memory = Backend::memory();
/// # Ok(()) }
/// ```
pub struct Backend {
    pub(crate) kind: Kind,
}

pub(crate) enum Kind {
    Memory,
    Remote(Box<Remote>),
}

/// How to (re)connect.
enum Connector {
    Client(redis::Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    /// One client per sentinel, all asked at once: the first primary named wins, so a
    /// sentinel that hangs delays nothing.
    Sentinels(Vec<tokio::sync::Mutex<SentinelClient>>),
    Cluster(ClusterClient),
    /// A connection given by the caller, never remade.
    Given,
}

#[derive(Clone)]
pub(crate) enum Connection {
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// A server and the connection to it.
pub(crate) struct Remote {
    connector: Connector,
    connection: Mutex<Option<Connection>>,
    /// Serializes connecting, so a burst of calls makes one connection.
    connecting: tokio::sync::Mutex<()>,
    /// The module, the scripts, or whichever the server offers.
    pub(crate) engine: EngineState,
}

impl Backend {
    /// No server: every decision is made in this process's memory by the same
    /// algorithms the module runs (for development and single-process services).
    #[must_use]
    pub fn memory() -> Self {
        Self { kind: Kind::Memory }
    }

    /// One Redis server, by URL (`redis://[user:password@]host:port[/db]`; add
    /// `?protocol=resp3` for RESP3).
    ///
    /// # Errors
    /// An invalid URL.
    pub fn redis(url: &str) -> Result<Self> {
        Ok(Self::client(redis::Client::open(url)?))
    }

    /// One Redis server, from a `redis` client.
    #[must_use]
    pub fn client(client: redis::Client) -> Self {
        Self::remote(Connector::Client(client), None)
    }

    /// The primary that Sentinel names, followed across failovers: the connection is
    /// made again, asking the sentinels, whenever the old one fails or turns read-only.
    ///
    /// `redis`'s `SentinelClient` asks its sentinels one after the other, without a
    /// response timeout: a sentinel that hangs (its host gone) ahead of the others
    /// blocks every reconnection. Prefer [`Backend::sentinels`], which asks them all at
    /// once; use this one for a client configured in ways that one does not offer.
    #[must_use]
    pub fn sentinel(client: SentinelClient) -> Self {
        Self::remote(Connector::Sentinel(tokio::sync::Mutex::new(client)), None)
    }

    /// The primary the sentinels at `urls` name `master`, followed across failovers.
    /// Unlike [`Backend::sentinel`], every (re)connection asks all the sentinels at
    /// once and takes the first primary named, so a sentinel that hangs (or whose host
    /// is gone) delays nothing.
    ///
    /// # Errors
    /// An invalid URL.
    pub fn sentinels<I, T>(
        urls: I,
        master: &str,
        node: Option<redis::sentinel::SentinelNodeConnectionInfo>,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: redis::IntoConnectionInfo,
    {
        let clients = urls
            .into_iter()
            .map(|url| {
                SentinelClient::build(
                    vec![url],
                    master.to_owned(),
                    node.clone(),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map(tokio::sync::Mutex::new)
            })
            .collect::<redis::RedisResult<Vec<_>>>()?;
        Ok(Self::remote(Connector::Sentinels(clients), None))
    }

    /// A Redis Cluster, from the URLs of some of its nodes.
    ///
    /// # Errors
    /// An invalid URL.
    pub fn cluster<I, T>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = T>,
        T: redis::IntoConnectionInfo,
    {
        Ok(Self::cluster_client(ClusterClient::new(nodes)?))
    }

    /// A Redis Cluster, from a `redis` cluster client.
    #[must_use]
    pub fn cluster_client(client: ClusterClient) -> Self {
        Self::remote(Connector::Cluster(client), None)
    }

    /// An established cluster connection (it follows `MOVED`/`ASK` and reconnects
    /// by itself).
    #[must_use]
    pub fn cluster_connection(connection: ClusterConnection) -> Self {
        Self::remote(Connector::Given, Some(Connection::Cluster(connection)))
    }

    /// An established multiplexed connection. It is never remade: after the server
    /// restarts, every call fails; prefer [`Backend::redis`], which reconnects.
    #[must_use]
    pub fn connection(connection: MultiplexedConnection) -> Self {
        Self::remote(Connector::Given, Some(Connection::Multiplexed(connection)))
    }

    fn remote(connector: Connector, connection: Option<Connection>) -> Self {
        Self {
            kind: Kind::Remote(Box::new(Remote {
                connector,
                connection: Mutex::new(connection),
                connecting: tokio::sync::Mutex::new(()),
                engine: EngineState::new(ServerEngine::Module),
            })),
        }
    }

    /// Decides with `engine` on the server: the module (the default), Lua scripts, or
    /// whichever the server offers ([`ServerEngine`]). No effect on [`Backend::memory`].
    #[must_use]
    pub fn with_engine(mut self, engine: ServerEngine) -> Self {
        if let Kind::Remote(remote) = &mut self.kind {
            remote.engine = EngineState::new(engine);
        }
        self
    }

    /// True for a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        match &self.kind {
            Kind::Memory => false,
            Kind::Remote(remote) => {
                matches!(remote.connector, Connector::Cluster(_))
                    || matches!(remote.current(), Some(Connection::Cluster(_)))
            }
        }
    }
}

impl Remote {
    fn current(&self) -> Option<Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The connection, made now if there is none (within `timeout`); true if it was
    /// made before this call.
    pub(crate) async fn connect(&self, timeout: Duration) -> Result<(Connection, bool)> {
        if let Some(connection) = self.current() {
            return Ok((connection, true));
        }
        // Boxed: connecting is a large future that most calls never run; inline, every
        // call's future would be that large (and moved, and allocated, at that size).
        Box::pin(self.connect_anew(timeout)).await
    }

    /// [`connect`](Self::connect) when there was no connection.
    async fn connect_anew(&self, timeout: Duration) -> Result<(Connection, bool)> {
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(connection) = self.current() {
            return Ok((connection, true));
        }
        // Only the connecting: the limiter bounds every call with its own timeout (a
        // second timer per request here would cost without adding anything).
        let config = AsyncConnectionConfig::new().set_connection_timeout(timeout);
        let connection = match &self.connector {
            Connector::Client(client) => Connection::Multiplexed(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ),
            Connector::Sentinel(client) => Connection::Multiplexed(
                client
                    .lock()
                    .await
                    .get_async_connection_with_config(&config)
                    .await?,
            ),
            Connector::Sentinels(clients) => {
                let lookups = clients.iter().map(|client| {
                    Box::pin(async {
                        client
                            .lock()
                            .await
                            .get_async_connection_with_config(&config)
                            .await
                    })
                });
                let (connection, _) = futures_util::future::select_ok(lookups).await?;
                Connection::Multiplexed(connection)
            }
            Connector::Cluster(client) => Connection::Cluster(client.get_async_connection().await?),
            Connector::Given => {
                return Err(Error::new(
                    crate::ErrorKind::Unavailable,
                    "the given connection is gone",
                ));
            }
        };
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok((connection, false))
    }

    /// Drops the connection so that the next call makes a new one (unless it was given).
    pub(crate) fn disconnect(&self) {
        if !matches!(self.connector, Connector::Given) {
            *self
                .connection
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// Sends `cmd`; in a cluster, to the primary of `slot` when given (else by its
    /// first key). `timeout` bounds only the connecting; the caller bounds the rest.
    pub(crate) async fn query(
        &self,
        cmd: &Cmd,
        slot: Option<u16>,
        timeout: Duration,
    ) -> Result<Value> {
        let (connection, reused) = self.connect(timeout).await?;
        if !reused {
            self.engine.forget();
        }
        let value = match crate::engine::dispatch(self, connection, cmd, slot).await {
            // A connection made earlier may have been closed while it sat idle (the
            // server restarted, its idle `timeout`, CLIENT KILL, a proxy): the server
            // may well be up, so make it again, once, within the caller's timeout.
            Err(error) if reused && error.is_connection_dropped() => {
                self.disconnect();
                self.engine.forget();
                // Boxed, as connecting: rare, and the call's future stays small.
                Box::pin(async {
                    let (connection, _) = self.connect(timeout).await?;
                    Ok::<_, Error>(crate::engine::dispatch(self, connection, cmd, slot).await?)
                })
                .await?
            }
            result => result?,
        };
        // Error replies arrive as values: make them errors.
        crate::engine::without_errors(value)
    }
}

impl Remote {
    /// How logs and errors name the server this backend decides on.
    pub(crate) fn node_name(&self) -> String {
        match &self.connector {
            Connector::Client(client) => client.get_connection_info().addr.to_string(),
            Connector::Sentinel(_) | Connector::Sentinels(_) => {
                "the primary Sentinel names".to_owned()
            }
            Connector::Cluster(_) => "a cluster node".to_owned(),
            Connector::Given => "the server of the given connection".to_owned(),
        }
    }

    /// Whether the module is loaded on every server this backend reaches: the server,
    /// the primary Sentinel names now, or every primary of the cluster. Each answer within
    /// `timeout`.
    pub(crate) async fn verify(&self, timeout: Duration) -> Result<Vec<NodeInfo>> {
        let answers = match &self.connector {
            Connector::Sentinel(client) => {
                let client = within(timeout, client.lock().await.async_get_client()).await?;
                vec![ask_one(&client, timeout).await?]
            }
            Connector::Sentinels(clients) => {
                let lookups = clients
                    .iter()
                    .map(|client| Box::pin(async { client.lock().await.async_get_client().await }));
                let (client, _) = within(timeout, futures_util::future::select_ok(lookups)).await?;
                vec![ask_one(&client, timeout).await?]
            }
            _ => match self.connect(timeout).await?.0 {
                Connection::Multiplexed(connection) => {
                    let found = ask(&mut Asker::One(connection), timeout).await?;
                    vec![(self.node_name(), found)]
                }
                Connection::Cluster(connection) => {
                    ask_all(&mut Asker::All(connection), timeout).await?
                }
            },
        };
        let mut nodes = Vec::new();
        let mut missing = Vec::new();
        for (address, found) in answers {
            match found {
                Found::Loaded(module_version) => nodes.push(NodeInfo {
                    address,
                    module_version,
                }),
                Found::Missing(modules) => missing.push((address, modules)),
            }
        }
        if missing.is_empty() {
            Ok(nodes)
        } else {
            Err(verify::missing(&missing))
        }
    }
}

/// Where [`ask`] sends its commands.
pub(crate) enum Asker {
    /// One server.
    One(MultiplexedConnection),
    /// Every primary of a cluster.
    All(ClusterConnection),
}

impl Asker {
    /// `cmd`'s reply: from the server, or a map of node address to reply.
    pub(crate) async fn send(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Self::One(connection) => connection.req_packed_command(cmd).await,
            Self::All(connection) => {
                let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                connection.route_command(cmd, routing).await
            }
        }
    }
}

/// `future` within `timeout`, as a redlimit result.
pub(crate) async fn within<T>(
    timeout: Duration,
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::new(
            crate::ErrorKind::Timeout,
            format!("no answer within {} ms", timeout.as_millis()),
        )),
    }
}

/// Asks the server of `client` (a new connection) whether the module is loaded.
async fn ask_one(client: &redis::Client, timeout: Duration) -> Result<(String, Found)> {
    let name = client.get_connection_info().addr.to_string();
    let config = AsyncConnectionConfig::new().set_connection_timeout(timeout);
    let connection = within(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .map_err(|error| error.on_node(&name))?;
    let found = ask(&mut Asker::One(connection), timeout).await?;
    Ok((name, found))
}

/// `MODULE LIST`; `COMMAND INFO RL.TOKENBUCKET` when the server refuses it (an ACL
/// without `@admin`, a managed service that renamed it).
async fn ask(asker: &mut Asker, timeout: Duration) -> Result<Found> {
    let list = module_list();
    match within(timeout, asker.send(&list)).await.and_then(errors) {
        Ok(reply) => verify::module_list(&reply),
        Err(error) if is_refusal(&error) => {
            let reply = within(timeout, asker.send(&command_info()))
                .await
                .and_then(errors)?;
            verify::command_info(&reply)
        }
        Err(error) => Err(error),
    }
}

/// [`ask`] on every primary of a cluster: each one's address and answer.
async fn ask_all(asker: &mut Asker, timeout: Duration) -> Result<Vec<(String, Found)>> {
    let list = module_list();
    let by_node = |reply: Value, read: fn(&Value) -> Result<Found>| -> Result<Vec<_>> {
        let Value::Map(nodes) = reply else {
            return Err(Error::new(
                crate::ErrorKind::Protocol,
                format!("expected one answer per node, the cluster sent {reply:?}"),
            ));
        };
        nodes
            .into_iter()
            .map(|(address, reply)| {
                let address = match address {
                    Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    other => format!("{other:?}"),
                };
                let reply = errors(reply).map_err(|e| e.on_node(&address))?;
                Ok((address, read(&reply)?))
            })
            .collect()
    };
    match within(timeout, asker.send(&list))
        .await
        .and_then(|reply| by_node(reply, verify::module_list))
    {
        Err(error) if is_refusal(&error) => {}
        result => return result,
    }
    let reply = within(timeout, asker.send(&command_info())).await?;
    by_node(reply, verify::command_info)
}

/// `MODULE LIST`.
fn module_list() -> Cmd {
    let mut cmd = redis::cmd("MODULE");
    cmd.arg("LIST");
    cmd
}

/// `COMMAND INFO RL.TOKENBUCKET`.
fn command_info() -> Cmd {
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("INFO").arg("RL.TOKENBUCKET");
    cmd
}

/// A reply, an error reply made an error.
fn errors(reply: Value) -> Result<Value> {
    Ok(reply.extract_error()?)
}

/// The server answered but refused the command itself (`NOPERM`, or it does not know
/// it): a question to ask another way, not a failure.
fn is_refusal(error: &Error) -> bool {
    matches!(
        error.kind(),
        crate::ErrorKind::Server | crate::ErrorKind::ModuleNotLoaded
    )
}

/// Sends `cmd` on `connection`; in a cluster, to the primary of `slot` when given.
pub(crate) async fn send(
    connection: Connection,
    cmd: &Cmd,
    slot: Option<u16>,
) -> redis::RedisResult<Value> {
    match connection {
        // The inherent method: `ConnectionLike::req_packed_command` boxes its future.
        Connection::Multiplexed(mut connection) => connection.send_packed_command(cmd).await,
        Connection::Cluster(mut connection) => match slot {
            Some(slot) => {
                let route = Route::new(slot, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                connection.route_command(cmd, routing).await
            }
            None => connection.req_packed_command(cmd).await,
        },
    }
}

/// The single slot of `keys` in a cluster.
///
/// # Errors
/// [`ErrorKind::CrossSlot`](crate::ErrorKind::CrossSlot) when they hash to different slots.
pub(crate) fn one_slot<K: AsRef<[u8]>>(keys: impl IntoIterator<Item = K>) -> Result<Option<u16>> {
    let mut slots = keys.into_iter().map(|key| slot::of(key.as_ref()));
    let Some(first) = slots.next() else {
        return Ok(None);
    };
    if slots.all(|slot| slot == first) {
        Ok(Some(first))
    } else {
        Err(Error::new(
            crate::ErrorKind::CrossSlot,
            "in Redis Cluster the keys of one all-or-nothing check must share a slot: \
             give them a common hash tag, as in {user:42}:minute and {user:42}:hour",
        ))
    }
}
