//! A Redis Cluster on loopback: 3 primaries and 3 replicas, every node with the modules
//! given, created by `redis-cli --cluster create`; slots moved the legacy way
//! (`CLUSTER SETSLOT` + `MIGRATE`) or, on Valkey 9, by atomic slot migration; a primary
//! killed and its replica's takeover awaited.
//!
//! ```no_run
//! use redlimit_test_support::{ClusterBuilder, available_servers, key_slot, module_path};
//!
//! for binary in available_servers() {
//!     let mut cluster = ClusterBuilder::new(&binary).module(module_path()).start();
//!     let slot = key_slot(b"user:42");
//!     let owner = cluster.owner(slot);
//!     let other = cluster.primaries().into_iter().find(|&p| p != owner).unwrap();
//!     let keys_moved = cluster.migrate_slots(&[slot], other);
//!     assert_eq!((keys_moved, cluster.owner(slot)), (0, other));
//!
//!     cluster.kill(other);
//!     let promoted = cluster.wait_for_failover(other);
//!     assert_eq!(cluster.owner(slot), promoted);
//! }
//! ```
//!
//! Nodes are started in parallel, each in its own temporary directory with its own
//! `nodes.conf`, on a port `p` of 20000..30000 whose cluster bus port `p + 10000` is
//! free too (both outside the range the system hands out for outgoing connections).
//! Every node is killed when the [`Cluster`] is dropped; their logs are shown when the
//! test fails. Nodes are named by their port.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::binaries::ServerBinary;
use crate::server::{Server, ServerBuilder};

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16_384;
/// Primaries in the cluster; each has one replica.
const PRIMARIES: usize = 3;
/// How long the cluster may take to agree on its configuration after a change.
const STABLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a failover may take, from the kill to every node naming the new primary.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an atomic slot migration may take.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one `MIGRATE` call, in ms.
const MIGRATE_TIMEOUT_MS: u64 = 10_000;
/// Keys `MIGRATE` moves per call.
const MIGRATE_BATCH: usize = 100;
/// Pause between two polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Read/write timeout of the harness's own connections.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Client ports are drawn from here; the bus port is 10000 above.
const PORT_RANGE: RangeInclusive<u16> = 20_000..=29_999;
/// Ports tried for one node when others take them first.
const START_ATTEMPTS: usize = 3;
/// `cluster-node-timeout` unless the builder says otherwise.
const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster slot of `key`: CRC16 (XMODEM) of its hash tag (the bytes between the
/// first `{` and the next `}`, when not empty), else of the whole key, modulo 16384.
///
/// ```
/// use redlimit_test_support::key_slot;
///
/// assert_eq!(key_slot(b"foo"), 12182);
/// assert_eq!(key_slot(b"{user:1}:minute"), key_slot(b"{user:1}:hour"));
/// ```
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = key.get(open + 1..)?;
            let close = rest.iter().position(|&b| b == b'}')?;
            rest.get(..close).filter(|tag| !tag.is_empty())
        })
        .unwrap_or(key);
    let crc = tagged.iter().fold(0u16, |crc, &byte| {
        (0..8).fold(crc ^ (u16::from(byte) << 8), |crc, _| {
            if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            }
        })
    });
    crc % SLOTS
}

/// Builds and starts a [`Cluster`]. Consuming builder, like [`ServerBuilder`].
#[must_use]
#[derive(Debug, Clone)]
pub struct ClusterBuilder {
    binary: ServerBinary,
    modules: Vec<PathBuf>,
    args: Vec<String>,
    node_timeout: Duration,
}

impl ClusterBuilder {
    /// Three primaries and three replicas of `binary`, `cluster-node-timeout` 5 s.
    pub fn new(binary: &ServerBinary) -> Self {
        ClusterBuilder {
            binary: binary.clone(),
            modules: Vec::new(),
            args: Vec::new(),
            node_timeout: DEFAULT_NODE_TIMEOUT,
        }
    }

    /// Loads the module at `path` on every node.
    pub fn module(mut self, path: impl Into<PathBuf>) -> Self {
        self.modules.push(path.into());
        self
    }

    /// `cluster-node-timeout`: how long a node may be unreachable before it is failed
    /// over. Lower it (1 s) to make failover tests fast.
    pub fn node_timeout(mut self, timeout: Duration) -> Self {
        self.node_timeout = timeout;
        self
    }

    /// Appends command-line arguments given to every node, e.g.
    /// `.args(["--cluster-require-full-coverage", "no"])`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the six nodes (in parallel), creates the cluster with
    /// `redis-cli --cluster create ... --cluster-replicas 1`, and waits until every node
    /// says `cluster_state:ok`, all agree on who owns which slot, and every replica has
    /// finished its first sync.
    ///
    /// # Panics
    ///
    /// If a node does not start, `redis-cli` fails, or the cluster is not stable within
    /// 30 s; the message holds what went wrong, and the node logs are printed.
    pub fn start(self) -> Cluster {
        let ports = cluster_ports(2 * PRIMARIES);
        let builder = &self;
        let servers: Vec<Server> = thread::scope(|scope| {
            let starting: Vec<_> = ports
                .iter()
                .map(|&port| scope.spawn(move || builder.start_node(port)))
                .collect();
            starting
                .into_iter()
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|_| panic!("a cluster node failed to start"))
                })
                .collect()
        });
        let mut cluster = Cluster {
            binary: self.binary.clone(),
            nodes: servers
                .into_iter()
                .map(|server| Node {
                    port: server.port(),
                    id: String::new(),
                    server: Some(server),
                    slots_when_killed: Vec::new(),
                })
                .collect(),
        };
        for node in &mut cluster.nodes {
            let mut con = connect(node.port);
            node.id = redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut con)
                .unwrap_or_else(|e| panic!("CLUSTER MYID on port {} failed: {e}", node.port));
        }
        cluster.create();
        cluster.wait_until_stable();
        cluster
    }

    /// Starts one node on `port`; if another process took the port (or its bus port)
    /// meanwhile, on other free ports.
    fn start_node(&self, mut port: u16) -> Server {
        for _ in 1..START_ATTEMPTS {
            match panic::catch_unwind(AssertUnwindSafe(|| self.node(port).start())) {
                Ok(server) => return server,
                Err(_) if !(is_free(port) && is_free(port + 10_000)) => {
                    port = cluster_ports(1).remove(0);
                }
                Err(failure) => panic::resume_unwind(failure),
            }
        }
        self.node(port).start()
    }

    /// The builder of one node on `port`.
    fn node(&self, port: u16) -> ServerBuilder {
        let mut builder = ServerBuilder::new(&self.binary).port(port).args([
            "--cluster-enabled".to_owned(),
            "yes".to_owned(),
            "--cluster-config-file".to_owned(),
            "nodes.conf".to_owned(),
            "--cluster-node-timeout".to_owned(),
            self.node_timeout.as_millis().to_string(),
        ]);
        for module in &self.modules {
            builder = builder.module(module);
        }
        builder.args(self.args.iter().cloned())
    }
}

/// One node: its port, its cluster id, and its process while it runs.
#[derive(Debug)]
struct Node {
    port: u16,
    id: String,
    server: Option<Server>,
    /// The slots it served when it was killed.
    slots_when_killed: Vec<RangeInclusive<u16>>,
}

/// Three primaries and three replicas with one binary; built by [`ClusterBuilder`].
#[derive(Debug)]
pub struct Cluster {
    binary: ServerBinary,
    nodes: Vec<Node>,
}

/// What a node says about one node of the cluster (a line of `CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's cluster id.
    pub id: String,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    /// A primary (else a replica).
    pub primary: bool,
    /// For a replica, the id of its primary.
    pub primary_id: Option<String>,
    /// Flagged `fail` or `fail?`.
    pub failing: bool,
    /// The slots it serves, as inclusive ranges.
    pub slots: Vec<RangeInclusive<u16>>,
}

impl Cluster {
    /// The binary every node runs.
    pub fn binary(&self) -> &ServerBinary {
        &self.binary
    }

    /// The ports of the running nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.live().map(|node| node.port).collect()
    }

    /// `redis://127.0.0.1:<port>/` of every running node: seeds for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.live()
            .map(|node| format!("redis://127.0.0.1:{}/", node.port))
            .collect()
    }

    /// The running node on `port`.
    ///
    /// # Panics
    ///
    /// If no running node listens there.
    pub fn server(&self, port: u16) -> &Server {
        self.live()
            .find(|node| node.port == port)
            .and_then(|node| node.server.as_ref())
            .unwrap_or_else(|| panic!("no running cluster node on port {port}"))
    }

    /// A plain (non-cluster) connection to the node on `port`, 10 s timeouts.
    ///
    /// # Panics
    ///
    /// If it cannot connect.
    pub fn connection(&self, port: u16) -> redis::Connection {
        self.server(port).connection()
    }

    /// The cluster id of the node on `port` (running or killed).
    ///
    /// # Panics
    ///
    /// If no node of this cluster had that port.
    pub fn node_id(&self, port: u16) -> &str {
        self.nodes
            .iter()
            .find(|node| node.port == port)
            .map(|node| node.id.as_str())
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// `CLUSTER NODES` as the first running node sees it.
    ///
    /// # Panics
    ///
    /// If no node runs or the command fails.
    pub fn topology(&self) -> Vec<NodeInfo> {
        let port = self
            .live()
            .next()
            .map(|node| node.port)
            .unwrap_or_else(|| panic!("no cluster node runs"));
        self.topology_seen_by(port)
            .unwrap_or_else(|e| panic!("CLUSTER NODES on port {port} failed: {e}"))
    }

    /// The ports of the primaries that serve slots, in slot order.
    pub fn primaries(&self) -> Vec<u16> {
        let mut primaries: Vec<(u16, u16)> = self
            .topology()
            .into_iter()
            .filter(|node| node.primary && !node.failing)
            .filter_map(|node| Some((*node.slots.first()?.start(), node.port)))
            .collect();
        primaries.sort_unstable();
        primaries.into_iter().map(|(_, port)| port).collect()
    }

    /// The port of the primary serving `slot`.
    ///
    /// # Panics
    ///
    /// If no primary serves it.
    pub fn owner(&self, slot: u16) -> u16 {
        self.topology()
            .into_iter()
            .find(|node| node.primary && node.slots.iter().any(|range| range.contains(&slot)))
            .map(|node| node.port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// The port of the primary serving `key`.
    pub fn owner_of(&self, key: &[u8]) -> u16 {
        self.owner(key_slot(key))
    }

    /// The port of the replica of the primary on `primary`, if it has one.
    pub fn replica_of(&self, primary: u16) -> Option<u16> {
        let id = self.node_id(primary).to_owned();
        self.topology()
            .into_iter()
            .find(|node| !node.primary && node.primary_id.as_ref() == Some(&id))
            .map(|node| node.port)
    }

    /// `CONFIG SET name value` on every running node.
    ///
    /// # Panics
    ///
    /// If a node refuses.
    pub fn config_set(&self, name: &str, value: &str) {
        for port in self.ports() {
            let reply: redis::RedisResult<()> = redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query(&mut connect(port));
            if let Err(e) = reply {
                panic!("CONFIG SET {name} {value} on port {port} failed: {e}");
            }
        }
    }

    /// Moves `slots` to the primary on `target` the legacy way, one slot after the
    /// other, as `redis-cli --cluster reshard` does (see [`SlotMigration`]). Returns the
    /// number of keys moved. Clients may keep working meanwhile: they get `ASK` for keys
    /// already moved and `MOVED` once a slot has moved.
    ///
    /// # Panics
    ///
    /// If a step fails, or the cluster does not agree on the new owners within 30 s.
    pub fn migrate_slots(&self, slots: &[u16], target: u16) -> usize {
        let topology = self.topology();
        let owner = |slot: u16| {
            topology
                .iter()
                .find(|node| node.primary && node.slots.iter().any(|r| r.contains(&slot)))
                .map(|node| node.port)
                .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
        };
        let mut connections = Connections::default();
        let mut moved = 0;
        for &slot in slots {
            let source = owner(slot);
            if source == target {
                continue;
            }
            let mut migration = self.open_migration(slot, source, target, connections);
            moved += migration.move_all_keys();
            connections = migration.close();
        }
        self.wait_until_stable();
        moved
    }

    /// Moves `count` slots from the primary on `source` to the primary on `target` with
    /// `redis-cli --cluster reshard --cluster-from <source> --cluster-to <target>
    /// --cluster-slots <count> --cluster-yes` (the source's lowest slots, moved with
    /// `CLUSTER SETSLOT` and `MIGRATE` in batches of 10 keys), then waits until every
    /// node agrees. Returns `redis-cli`'s output.
    ///
    /// # Panics
    ///
    /// If `redis-cli` fails, or the cluster does not agree within 30 s.
    pub fn reshard_with_cli(&self, source: u16, target: u16, count: u16) -> String {
        let cli = cli_path(&self.binary);
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("reshard")
            .arg(format!("127.0.0.1:{source}"))
            .args(["--cluster-from", self.node_id(source)])
            .args(["--cluster-to", self.node_id(target)])
            .args(["--cluster-slots", &count.to_string()])
            .arg("--cluster-yes")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && !text.contains("[ERR]"),
            "{} --cluster reshard failed ({}):\n{text}",
            cli.display(),
            output.status
        );
        self.wait_until_stable();
        text
    }

    /// Starts moving `slot` to the primary on `target` the legacy way:
    /// `CLUSTER SETSLOT slot IMPORTING` on the target, `MIGRATING` on the owner. Move
    /// keys with [`SlotMigration::move_keys`] or [`SlotMigration::move_all_keys`], then
    /// [`SlotMigration::finish`].
    ///
    /// # Panics
    ///
    /// If `target` already owns the slot or a node refuses.
    pub fn begin_migration(&self, slot: u16, target: u16) -> SlotMigration<'_> {
        let source = self.owner(slot);
        assert_ne!(source, target, "port {target} already owns slot {slot}");
        self.open_migration(slot, source, target, Connections::default())
    }

    fn open_migration(
        &self,
        slot: u16,
        source: u16,
        target: u16,
        mut connections: Connections,
    ) -> SlotMigration<'_> {
        let (source_id, target_id) = (self.node_id(source), self.node_id(target));
        setslot(connections.get(target), slot, "IMPORTING", source_id);
        setslot(connections.get(source), slot, "MIGRATING", target_id);
        SlotMigration {
            cluster: self,
            slot,
            source,
            target,
            connections,
        }
    }

    /// Moves the slots of `range` from their owner to the primary on `target` with
    /// Valkey 9's atomic slot migration: `CLUSTER MIGRATESLOTS SLOTSRANGE a b NODE id`
    /// on the owner, then polls `CLUSTER GETSLOTMIGRATIONS` there until the job says
    /// `success`, and waits until every node agrees on the new owner. Returns the
    /// number of keys in those slots afterwards.
    ///
    /// # Panics
    ///
    /// If the slots have several owners, the server refuses (not Valkey 9, or a module
    /// that does not declare support), the job fails, or it takes longer than 30 s.
    pub fn migrate_slots_atomically(&self, range: RangeInclusive<u16>, target: u16) -> usize {
        let source = self.owner(*range.start());
        for slot in range.clone() {
            assert_eq!(self.owner(slot), source, "slot {slot} has another owner");
        }
        let mut con = connect(source);
        let known: Vec<Option<String>> = migration_jobs(&mut con)
            .into_iter()
            .map(|job| job.get("name").cloned())
            .collect();
        let reply: redis::RedisResult<()> = redis::cmd("CLUSTER")
            .arg("MIGRATESLOTS")
            .arg("SLOTSRANGE")
            .arg(range.start())
            .arg(range.end())
            .arg("NODE")
            .arg(self.node_id(target))
            .query(&mut con);
        if let Err(e) = reply {
            panic!("CLUSTER MIGRATESLOTS {range:?} to port {target} on port {source} failed: {e}");
        }
        let deadline = Instant::now() + MIGRATION_TIMEOUT;
        loop {
            let jobs = migration_jobs(&mut con);
            let ours = jobs
                .iter()
                .find(|job| !known.contains(&job.get("name").cloned()));
            let state = ours.and_then(|job| job.get("state")).map(String::as_str);
            match state {
                Some("success") => break,
                Some("failed" | "cancelled") => {
                    panic!("atomic migration of {range:?} to port {target}: {ours:?}")
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "atomic migration of {range:?} to port {target} still not done after \
                 {MIGRATION_TIMEOUT:?}: {jobs:?}"
            );
            thread::sleep(POLL_INTERVAL);
        }
        self.wait_until_stable();
        let mut target_con = connect(target);
        range
            .map(|slot| {
                redis::cmd("CLUSTER")
                    .arg("COUNTKEYSINSLOT")
                    .arg(slot)
                    .query::<usize>(&mut target_con)
                    .unwrap_or_else(|e| panic!("CLUSTER COUNTKEYSINSLOT {slot} failed: {e}"))
            })
            .sum()
    }

    /// Kills the node on `port` (SIGKILL), like a crash.
    ///
    /// # Panics
    ///
    /// If no running node listens there.
    pub fn kill(&mut self, port: u16) {
        let slots = self
            .topology()
            .into_iter()
            .find(|node| node.port == port)
            .map(|node| node.slots)
            .unwrap_or_default();
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port && node.server.is_some())
            .unwrap_or_else(|| panic!("no running cluster node on port {port}"));
        node.slots_when_killed = slots;
        if let Some(server) = node.server.take() {
            server.kill();
        }
    }

    /// Waits until another node has taken over the slots the node `dead` served when
    /// it was [`kill`](Cluster::kill)ed (its replica, promoted once the others agree it
    /// failed) and every running node agrees (`cluster_state:ok` everywhere). Returns
    /// the new owner's port (`dead` itself if it served no slots).
    ///
    /// # Panics
    ///
    /// If that takes longer than 30 s.
    pub fn wait_for_failover(&self, dead: u16) -> u16 {
        let slots = self
            .nodes
            .iter()
            .find(|node| node.port == dead && node.server.is_none())
            .map(|node| node.slots_when_killed.clone())
            .unwrap_or_else(|| panic!("port {dead} was not killed"));
        let Some(first) = slots.first().map(|range| *range.start()) else {
            self.wait_until_stable();
            return dead;
        };
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        loop {
            let promoted = self.ports().into_iter().find(|&port| {
                self.topology_seen_by(port).is_ok_and(|nodes| {
                    nodes.iter().any(|node| {
                        node.port == port
                            && node.primary
                            && slots.iter().all(|range| node.slots.contains(range))
                    })
                })
            });
            if promoted.is_some() && self.is_stable() {
                return self.owner(first);
            }
            assert!(
                Instant::now() < deadline,
                "no node took over the slots of port {dead} within {FAILOVER_TIMEOUT:?}: {}",
                self.describe()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until every running node says `cluster_state:ok`, all report the same
    /// owner for every slot, none flags a running node as failing or knows a slot being
    /// migrated, and every replica of a running primary has finished its sync.
    ///
    /// # Panics
    ///
    /// After 30 s, with what each node says.
    pub fn wait_until_stable(&self) {
        let deadline = Instant::now() + STABLE_TIMEOUT;
        while !self.is_stable() {
            assert!(
                Instant::now() < deadline,
                "{} cluster not stable after {STABLE_TIMEOUT:?}: {}",
                self.binary.name(),
                self.describe()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn is_stable(&self) -> bool {
        let mut views = Vec::new();
        for port in self.ports() {
            let Ok(mut con) = try_connect(port) else {
                return false;
            };
            let Ok(info) = redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut con) else {
                return false;
            };
            if field(&info, "cluster_state") != Some("ok") {
                return false;
            }
            let Ok(nodes) = redis::cmd("CLUSTER").arg("NODES").query::<String>(&mut con) else {
                return false;
            };
            // A slot in migration shows as `[slot->-id]` / `[slot-<-id]`.
            if nodes.contains("->-") || nodes.contains("-<-") {
                return false;
            }
            let topology = parse_nodes(&nodes);
            // No running node may look failing (a slow ping on a loaded machine).
            let running = self.ports();
            if topology
                .iter()
                .any(|node| node.failing && running.contains(&node.port))
            {
                return false;
            }
            let me = topology.iter().find(|node| node.port == port);
            if let Some(me) = me.filter(|me| !me.primary) {
                let Ok(replication) = redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut con)
                else {
                    return false;
                };
                let primary_alive = topology.iter().any(|node| {
                    Some(&node.id) == me.primary_id.as_ref()
                        && !node.failing
                        && self.ports().contains(&node.port)
                });
                let synced = field(&replication, "master_link_status") == Some("up")
                    && field(&replication, "master_sync_in_progress") == Some("0");
                if primary_alive && !synced {
                    return false;
                }
            }
            let mut owners: Vec<(u16, u16, String)> = topology
                .into_iter()
                .filter(|node| node.primary && !node.failing)
                .flat_map(|node| {
                    node.slots
                        .into_iter()
                        .map(move |range| (*range.start(), *range.end(), node.id.clone()))
                })
                .collect();
            owners.sort_unstable();
            let covered: u32 = owners
                .iter()
                .map(|(start, end, _)| u32::from(end - start) + 1)
                .sum();
            if covered != u32::from(SLOTS) {
                return false;
            }
            views.push(owners);
        }
        views.windows(2).all(|pair| pair[0] == pair[1])
    }

    /// What every running node says, for failure messages.
    fn describe(&self) -> String {
        self.ports()
            .into_iter()
            .map(|port| {
                let said = try_connect(port)
                    .and_then(|mut con| {
                        let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut con)?;
                        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut con)?;
                        Ok(format!(
                            "cluster_state:{}\n{nodes}",
                            field(&info, "cluster_state").unwrap_or("?")
                        ))
                    })
                    .unwrap_or_else(|e| format!("(no answer: {e})"));
                format!("\n-- port {port}: {said}")
            })
            .collect()
    }

    fn topology_seen_by(&self, port: u16) -> redis::RedisResult<Vec<NodeInfo>> {
        let mut con = try_connect(port)?;
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut con)?;
        Ok(parse_nodes(&nodes))
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|node| node.server.is_some())
    }

    /// `redis-cli --cluster create <all nodes> --cluster-replicas 1 --cluster-yes`.
    fn create(&self) {
        let cli = cli_path(&self.binary);
        let output = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(
                self.nodes
                    .iter()
                    .map(|node| format!("127.0.0.1:{}", node.port)),
            )
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
        assert!(
            output.status.success(),
            "{} --cluster create failed ({}):\n{}\n{}",
            cli.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A slot being moved the legacy way; see [`Cluster::begin_migration`].
#[derive(Debug)]
pub struct SlotMigration<'a> {
    cluster: &'a Cluster,
    slot: u16,
    source: u16,
    target: u16,
    connections: Connections,
}

/// Plain connections to nodes, made on first use and kept.
#[derive(Default)]
struct Connections(BTreeMap<u16, redis::Connection>);

impl Connections {
    fn get(&mut self, port: u16) -> &mut redis::Connection {
        self.0.entry(port).or_insert_with(|| connect(port))
    }
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl SlotMigration<'_> {
    /// The slot being moved.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The port of the node the slot moves from.
    pub fn source(&self) -> u16 {
        self.source
    }

    /// `MIGRATE 127.0.0.1 <target> "" 0 <timeout> KEYS keys...` on the source: moves
    /// these keys now (the source answers `ASK` for them from then on).
    ///
    /// # Panics
    ///
    /// If `MIGRATE` fails.
    pub fn move_keys<K: redis::ToRedisArgs>(&mut self, keys: &[K]) {
        if keys.is_empty() {
            return;
        }
        let reply: redis::RedisResult<String> = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(self.target)
            .arg("")
            .arg(0)
            .arg(MIGRATE_TIMEOUT_MS)
            .arg("KEYS")
            .arg(keys)
            .query(self.connections.get(self.source));
        match reply {
            // NOKEY: every key expired or was deleted meanwhile.
            Ok(status) if status == "OK" || status == "NOKEY" => {}
            other => panic!(
                "MIGRATE of slot {} from port {} to {}: {other:?}",
                self.slot, self.source, self.target
            ),
        }
    }

    /// Moves every key left in the slot (`CLUSTER GETKEYSINSLOT`, then `MIGRATE`, in
    /// batches of 100 until none is left); returns how many.
    pub fn move_all_keys(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(self.slot)
                .arg(MIGRATE_BATCH)
                .query(self.connections.get(self.source))
                .unwrap_or_else(|e| panic!("CLUSTER GETKEYSINSLOT {} failed: {e}", self.slot));
            if keys.is_empty() {
                return moved;
            }
            self.move_keys(&keys);
            moved += keys.len();
        }
    }

    /// `CLUSTER SETSLOT slot NODE <target>` on the target, the source and then every
    /// other primary: the slot is the target's.
    ///
    /// # Panics
    ///
    /// If a node refuses (keys left on the source, for instance).
    pub fn finish(self) {
        let _connections = self.close();
    }

    /// [`finish`](Self::finish), handing back the connections for the next slot.
    fn close(mut self) -> Connections {
        let target_id = self.cluster.node_id(self.target);
        let others: Vec<u16> = self
            .cluster
            .primaries()
            .into_iter()
            .filter(|&port| port != self.target && port != self.source)
            .collect();
        for port in [self.target, self.source].into_iter().chain(others) {
            setslot(self.connections.get(port), self.slot, "NODE", target_id);
        }
        self.connections
    }
}

/// `CLUSTER SETSLOT slot <how> node` on `con`.
fn setslot(con: &mut redis::Connection, slot: u16, how: &str, node: &str) {
    let reply: redis::RedisResult<()> = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg(how)
        .arg(node)
        .query(con);
    if let Err(e) = reply {
        panic!("CLUSTER SETSLOT {slot} {how} {node} failed: {e}");
    }
}

/// `CLUSTER GETSLOTMIGRATIONS`: each job as field → value.
fn migration_jobs(con: &mut redis::Connection) -> Vec<BTreeMap<String, String>> {
    let reply: redis::Value = redis::cmd("CLUSTER")
        .arg("GETSLOTMIGRATIONS")
        .query(con)
        .unwrap_or_else(|e| panic!("CLUSTER GETSLOTMIGRATIONS failed: {e}"));
    let redis::Value::Array(jobs) = reply else {
        panic!("CLUSTER GETSLOTMIGRATIONS replied {reply:?}");
    };
    jobs.iter()
        .map(|job| {
            let pairs: Vec<(&redis::Value, &redis::Value)> = match job {
                redis::Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
                redis::Value::Array(items) => items
                    .chunks(2)
                    .filter_map(|pair| Some((pair.first()?, pair.get(1)?)))
                    .collect(),
                other => panic!("CLUSTER GETSLOTMIGRATIONS job {other:?}"),
            };
            pairs.into_iter().map(|(k, v)| (text(k), text(v))).collect()
        })
        .collect()
}

fn text(value: &redis::Value) -> String {
    match value {
        redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch>
/// <link> <slot> ...`, slots as `a-b` or `a`, migrations as `[..]` (skipped).
fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let id = (*fields.first()?).to_owned();
            let address = fields.get(1)?.split('@').next()?;
            let port = address.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = fields.get(2)?.split(',').collect();
            let primary = flags.contains(&"master");
            let failing = flags.contains(&"fail") || flags.contains(&"fail?");
            let primary_id = fields
                .get(3)
                .filter(|id| **id != "-")
                .map(|id| (*id).to_owned());
            let slots = fields
                .iter()
                .skip(8)
                .filter(|range| !range.starts_with('['))
                .filter_map(|range| match range.split_once('-') {
                    Some((a, b)) => Some(a.parse().ok()?..=b.parse().ok()?),
                    None => {
                        let slot = range.parse().ok()?;
                        Some(slot..=slot)
                    }
                })
                .collect();
            Some(NodeInfo {
                id,
                port,
                primary,
                primary_id,
                failing,
                slots,
            })
        })
        .collect()
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

fn try_connect(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let con = client.get_connection_with_timeout(IO_TIMEOUT)?;
    con.set_read_timeout(Some(IO_TIMEOUT))?;
    con.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(con)
}

fn connect(port: u16) -> redis::Connection {
    try_connect(port).unwrap_or_else(|e| panic!("cannot connect to port {port}: {e}"))
}

/// `count` distinct ports in [`PORT_RANGE`] that are free, with their bus ports.
fn cluster_ports(count: usize) -> Vec<u16> {
    let hasher = RandomState::new();
    let span = u64::from(PORT_RANGE.end() - PORT_RANGE.start()) + 1;
    let mut ports: Vec<u16> = Vec::new();
    for attempt in 0u64.. {
        assert!(attempt < 10_000, "no free ports in {PORT_RANGE:?}");
        let offset = u16::try_from(hasher.hash_one(attempt) % span).unwrap_or(0);
        let port = PORT_RANGE.start() + offset;
        if !ports.contains(&port) && is_free(port) && is_free(port + 10_000) {
            ports.push(port);
            if ports.len() == count {
                break;
            }
        }
    }
    ports
}

/// Whether nothing listens on `port` of 127.0.0.1 now.
fn is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The cluster tool for `binary`: `valkey-cli` next to a Valkey server if there is
/// one, else `redis-cli` (Redis 7.0's `redis-cli --cluster` creates Redis 8 and Valkey 9
/// clusters too).
fn cli_path(binary: &ServerBinary) -> PathBuf {
    let beside = |name: &str| binary.path.parent().map(|dir| dir.join(name));
    [beside("valkey-cli"), beside("redis-cli")]
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from("redis-cli"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_of_known_keys() {
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 0x31c3 % SLOTS);
        assert_eq!(key_slot(b"{foo}:bar"), 12182);
        assert_eq!(key_slot(b"{}foo"), key_slot(b"{}foo"));
        assert_ne!(key_slot(b"{}foo"), key_slot(b"foo"));
    }

    #[test]
    fn parses_cluster_nodes() {
        let text = "\
a1 127.0.0.1:20001@30001 myself,master - 0 0 1 connected 0-5460 [5461->-b2]
b2 127.0.0.1:20002@30002 master - 0 0 2 connected 5461-10922 12000
c3 127.0.0.1:20003@30003 slave a1 0 0 1 connected
d4 127.0.0.1:20004@30004 master,fail - 0 0 3 disconnected
";
        let nodes = parse_nodes(text);
        assert_eq!(nodes.len(), 4);
        assert_eq!(nodes[0].slots, vec![0..=5460]);
        assert_eq!(nodes[1].slots, vec![5461..=10922, 12000..=12000]);
        assert_eq!(nodes[2].primary_id.as_deref(), Some("a1"));
        assert!(!nodes[2].primary);
        assert!(nodes[3].failing && nodes[3].primary);
        assert_eq!(nodes[3].port, 20004);
    }
}
