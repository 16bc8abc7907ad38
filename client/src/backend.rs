//! Where limiter state lives: a Redis server (single, Sentinel-managed or Cluster) with
//! the redlimit module, or this process's memory.

use crate::error::{Error, Result};
use crate::slot;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
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
enum Connection {
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// A server and the connection to it.
pub(crate) struct Remote {
    connector: Connector,
    connection: Mutex<Option<Connection>>,
    /// Serializes connecting, so a burst of calls makes one connection.
    connecting: tokio::sync::Mutex<()>,
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
            })),
        }
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
    async fn connect(&self, timeout: Duration) -> Result<(Connection, bool)> {
        if let Some(connection) = self.current() {
            return Ok((connection, true));
        }
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
        let value = match send(connection, cmd, slot).await {
            // A connection made earlier may have been closed while it sat idle (the
            // server restarted, its idle `timeout`, CLIENT KILL, a proxy): the server
            // may well be up, so make it again, once, within the caller's timeout.
            Err(error) if reused && error.is_connection_dropped() => {
                self.disconnect();
                let (connection, _) = self.connect(timeout).await?;
                send(connection, cmd, slot).await?
            }
            result => result?,
        };
        // Error replies arrive as values: make them errors.
        Ok(value.extract_error()?)
    }
}

/// Sends `cmd` on `connection`; in a cluster, to the primary of `slot` when given.
async fn send(connection: Connection, cmd: &Cmd, slot: Option<u16>) -> redis::RedisResult<Value> {
    match connection {
        Connection::Multiplexed(mut connection) => connection.req_packed_command(cmd).await,
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
