//! A Sentinel-managed pair on loopback: one primary, one replica (both with the
//! modules given) and three sentinels monitoring them with quorum 2.
//!
//! ```no_run
//! use redlimit_test_support::{SentinelBuilder, available_servers, module_path};
//!
//! for binary in available_servers() {
//!     let mut group = SentinelBuilder::new(&binary).module(module_path()).start();
//!     let old = group.kill_primary();
//!     let new = group.wait_for_failover(old);
//!     assert_ne!(old, new);
//! }
//! ```
//!
//! Every process listens on a free 127.0.0.1 port and keeps its files in its own
//! temporary directory; all of them are killed when the [`SentinelGroup`] is dropped,
//! and their logs are shown when the test fails.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries::ServerBinary;
use crate::server::{Server, ServerBuilder};

/// The name the sentinels monitor the primary under.
pub const MASTER_NAME: &str = "redlimit";
/// How many sentinels watch the pair.
const SENTINELS: usize = 3;
/// How many sentinels must agree that the primary is down.
const QUORUM: usize = 2;
/// How long a sentinel may take to answer `PING` after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the sentinels may take to discover the replica and each other (hello
/// messages go out every 2 s).
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a failover may take, from the kill to every sentinel naming the new primary.
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts with a fresh port when another process took ours.
const START_ATTEMPTS: usize = 5;
/// Pause between two polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Read/write timeout of connections to a sentinel.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds and starts a [`SentinelGroup`]. Consuming builder, like [`ServerBuilder`].
#[must_use]
#[derive(Debug, Clone)]
pub struct SentinelBuilder {
    binary: ServerBinary,
    modules: Vec<PathBuf>,
    server_args: Vec<String>,
    down_after_ms: u64,
    failover_timeout_ms: u64,
}

impl SentinelBuilder {
    /// One primary and one replica of `binary`, and three sentinels run by the same
    /// binary (`<binary> sentinel.conf --sentinel`), with `down-after-milliseconds`
    /// 1000 and `failover-timeout` 4000.
    pub fn new(binary: &ServerBinary) -> Self {
        SentinelBuilder {
            binary: binary.clone(),
            modules: Vec::new(),
            server_args: Vec::new(),
            down_after_ms: 1_000,
            failover_timeout_ms: 4_000,
        }
    }

    /// Loads the module at `path` on the primary and the replica (not the sentinels).
    pub fn module(mut self, path: impl Into<PathBuf>) -> Self {
        self.modules.push(path.into());
        self
    }

    /// Appends command-line arguments for the primary and the replica.
    pub fn server_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.server_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// `sentinel down-after-milliseconds`: how long the primary must be silent before
    /// a sentinel deems it down.
    pub fn down_after_ms(mut self, ms: u64) -> Self {
        self.down_after_ms = ms;
        self
    }

    /// `sentinel failover-timeout`: how long one failover attempt may take (a failed
    /// attempt is retried after twice this).
    pub fn failover_timeout_ms(mut self, ms: u64) -> Self {
        self.failover_timeout_ms = ms;
        self
    }

    /// Starts the primary, the replica (waiting for its initial sync) and the
    /// sentinels, then waits until every sentinel knows the replica and the two other
    /// sentinels.
    ///
    /// # Panics
    ///
    /// If a process fails to start, or the sentinels do not discover each other and
    /// the replica within 20 s; the message holds the logs.
    pub fn start(self) -> SentinelGroup {
        let data_node = || {
            let mut builder = ServerBuilder::new(&self.binary);
            for module in &self.modules {
                builder = builder.module(module);
            }
            builder.args(self.server_args.iter().cloned())
        };
        let primary = data_node().start();
        let replica = data_node().replica_of(&primary).start();
        replica.wait_for_sync();
        let sentinels = (0..SENTINELS)
            .map(|_| SentinelProcess::start(&self, primary.port()))
            .collect();
        let group = SentinelGroup {
            binary: self.binary.clone(),
            servers: vec![Some(primary), Some(replica)],
            sentinels,
        };
        group.wait_for_discovery();
        group
    }
}

/// One sentinel process.
struct SentinelProcess {
    child: Child,
    port: u16,
    dir: TempDir,
    /// Frozen (SIGSTOP) or killed: asked nothing (until resumed).
    paused: AtomicBool,
}

impl SentinelProcess {
    /// Spawns a sentinel monitoring the primary on `primary_port` and waits until it
    /// answers `PING`; retries on a fresh port if another process took the chosen one.
    fn start(settings: &SentinelBuilder, primary_port: u16) -> SentinelProcess {
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("redlimit-sentinel-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temporary sentinel dir: {e}"));
            let port = free_port();
            // A sentinel rewrites its configuration file (it records what it learns),
            // so the file lives in its own directory.
            let config = format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 daemonize no\n\
                 dir {dir}\n\
                 logfile {dir}/sentinel.log\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} {QUORUM}\n\
                 sentinel down-after-milliseconds {MASTER_NAME} {down_after}\n\
                 sentinel failover-timeout {MASTER_NAME} {failover_timeout}\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir = dir.path().display(),
                down_after = settings.down_after_ms,
                failover_timeout = settings.failover_timeout_ms,
            );
            let config_path = dir.path().join("sentinel.conf");
            fs::write(&config_path, config)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
            let output = File::create(dir.path().join("sentinel.out"))
                .unwrap_or_else(|e| panic!("cannot create sentinel.out: {e}"));
            let stderr = output
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot duplicate a file handle: {e}"));
            let child = Command::new(&settings.binary.path)
                .arg(&config_path)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(output)
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot spawn {} as a sentinel: {e}",
                        settings.binary.path.display()
                    )
                });
            let mut sentinel = SentinelProcess {
                child,
                port,
                dir,
                paused: AtomicBool::new(false),
            };
            match sentinel.wait_until_ready() {
                Ok(()) => return sentinel,
                // Another process took the port: the next attempt takes another.
                Err(log) if log.contains("Address already in use") => {}
                Err(log) => panic!(
                    "{} failed to start as a sentinel on port {port}: {log}",
                    settings.binary.name()
                ),
            }
        }
        panic!(
            "{}: a sentinel's port was taken {START_ATTEMPTS} times in a row",
            settings.binary.name()
        )
    }

    /// Polls until the sentinel answers `PING`; on failure returns its log.
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status})\n{}", self.log()));
            }
            if let Ok(mut con) = self.connection() {
                // Ours, not another process that holds the port.
                let pid = info(&mut con, "server", "process_id");
                if pid == Some(self.child.id().to_string()) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no PONG within {READY_TIMEOUT:?}\n{}", self.log()));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        let client = redis::Client::open(self.url())?;
        let con = client.get_connection_with_timeout(IO_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    fn log(&self) -> String {
        let read = |name: &str| fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let mut log = read("sentinel.log");
        let output = read("sentinel.out");
        if !output.trim().is_empty() {
            log.push_str("\n---- stdout/stderr ----\n");
            log.push_str(&output);
        }
        log
    }

    /// `SENTINEL MASTER redlimit` as field/value pairs.
    fn master_info(&self) -> redis::RedisResult<Vec<(String, String)>> {
        let mut con = self.connection()?;
        let flat: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(MASTER_NAME)
            .query(&mut con)?;
        Ok(flat
            .chunks(2)
            .filter_map(|pair| match pair {
                [name, value] => Some((name.clone(), value.clone())),
                _ => None,
            })
            .collect())
    }

    /// The primary's port this sentinel names (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    fn primary_port(&self) -> Option<u16> {
        let mut con = self.connection().ok()?;
        let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(MASTER_NAME)
            .query(&mut con)
            .ok()?;
        addr.map(|(_, port)| port)
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A primary, its replica and three sentinels; everything is killed on drop.
pub struct SentinelGroup {
    binary: ServerBinary,
    /// The two data nodes; a killed one is `None`.
    servers: Vec<Option<Server>>,
    sentinels: Vec<SentinelProcess>,
}

impl std::fmt::Debug for SentinelGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelGroup")
            .field("binary", &self.binary.name())
            .field("servers", &self.server_ports())
            .field(
                "sentinels",
                &self.sentinels.iter().map(|s| s.port).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SentinelGroup {
    /// The name the sentinels know the primary by: [`MASTER_NAME`].
    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    /// `redis://127.0.0.1:<port>/` of each sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels.iter().map(SentinelProcess::url).collect()
    }

    /// Which binary runs the group.
    pub fn binary(&self) -> &ServerBinary {
        &self.binary
    }

    /// The ports of the data nodes still running.
    pub fn server_ports(&self) -> Vec<u16> {
        self.servers.iter().flatten().map(Server::port).collect()
    }

    /// The running data node on `port`.
    ///
    /// # Panics
    ///
    /// If none runs there.
    pub fn server(&self, port: u16) -> &Server {
        self.servers
            .iter()
            .flatten()
            .find(|server| server.port() == port)
            .unwrap_or_else(|| panic!("no running server on port {port}: {self:?}"))
    }

    /// The port of the primary, as the first sentinel that answers names it (paused
    /// ones are not asked).
    ///
    /// # Panics
    ///
    /// If no sentinel answers.
    pub fn primary_port(&self) -> u16 {
        self.answering()
            .find_map(SentinelProcess::primary_port)
            .unwrap_or_else(|| panic!("no sentinel names a primary: {self:?}"))
    }

    /// The data node the sentinels name as primary.
    pub fn primary(&self) -> &Server {
        self.server(self.primary_port())
    }

    /// Kills the primary at once (SIGKILL, like a crash) and returns its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        let slot = self
            .servers
            .iter_mut()
            .find(|slot| slot.as_ref().is_some_and(|s| s.port() == port))
            .unwrap_or_else(|| panic!("the primary on port {port} is not running"));
        if let Some(server) = slot.take() {
            server.kill();
        }
        port
    }

    /// Waits until every sentinel (but the paused ones) names a primary other than
    /// `old_port` and that server says it is a master; returns its port.
    ///
    /// # Panics
    ///
    /// If that does not happen within 30 s; the message holds the sentinels' logs.
    pub fn wait_for_failover(&self, old_port: u16) -> u16 {
        let deadline = Instant::now() + FAILOVER_TIMEOUT;
        loop {
            let named: Vec<Option<u16>> = self
                .answering()
                .map(SentinelProcess::primary_port)
                .collect();
            if let Some(Some(new_port)) = named.first()
                && *new_port != old_port
                && named.iter().all(|port| *port == Some(*new_port))
                && self.is_master(*new_port)
            {
                return *new_port;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no failover from port {old_port} within {FAILOVER_TIMEOUT:?}; the \
                 sentinels name {named:?}\n{}",
                self.binary.name(),
                self.logs()
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Freezes the sentinel at `index` (in [`sentinel_urls`](Self::sentinel_urls) order)
    /// with SIGSTOP: it keeps accepting connections (the kernel completes them) but
    /// never answers, like a sentinel on a host that hangs.
    /// [`resume_sentinel`](Self::resume_sentinel) undoes it; dropping the group kills it
    /// either way.
    ///
    /// # Panics
    ///
    /// If there is no such sentinel or the signal cannot be sent.
    pub fn pause_sentinel(&self, index: usize) {
        self.signal_sentinel(index, "STOP");
    }

    /// Kills the sentinel at `index` (SIGKILL): its port refuses connections from now on.
    ///
    /// # Panics
    ///
    /// If there is no such sentinel or the signal cannot be sent.
    pub fn kill_sentinel(&self, index: usize) {
        self.signal_sentinel(index, "KILL");
    }

    /// Resumes a sentinel frozen by [`pause_sentinel`](Self::pause_sentinel).
    ///
    /// # Panics
    ///
    /// If there is no such sentinel or the signal cannot be sent.
    pub fn resume_sentinel(&self, index: usize) {
        self.signal_sentinel(index, "CONT");
    }

    fn signal_sentinel(&self, index: usize, signal: &str) {
        let sentinel = self
            .sentinels
            .get(index)
            .unwrap_or_else(|| panic!("no sentinel #{index}: {self:?}"));
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(sentinel.child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{signal}: {e}"));
        assert!(
            status.success(),
            "kill -{signal} of sentinel #{index} failed"
        );
        // A frozen or killed sentinel is asked nothing more.
        sentinel.paused.store(signal != "CONT", Ordering::Relaxed);
    }

    /// The sentinels not paused.
    fn answering(&self) -> impl Iterator<Item = &SentinelProcess> {
        self.sentinels
            .iter()
            .filter(|s| !s.paused.load(Ordering::Relaxed))
    }

    /// Asks the first sentinel to fail over now (`SENTINEL FAILOVER redlimit`), while
    /// the primary is up: a switchover. Follow with
    /// [`wait_for_failover`](Self::wait_for_failover).
    ///
    /// # Panics
    ///
    /// If the sentinel refuses (for example, no replica is known to it).
    pub fn start_failover(&self) {
        let sentinel = self
            .answering()
            .next()
            .unwrap_or_else(|| panic!("every sentinel is paused: {self:?}"));
        let mut con = sentinel
            .connection()
            .unwrap_or_else(|e| panic!("cannot connect to the sentinel: {e}"));
        let reply: redis::RedisResult<()> = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(MASTER_NAME)
            .query(&mut con);
        if let Err(e) = reply {
            panic!(
                "SENTINEL FAILOVER {MASTER_NAME} failed: {e}\n{}",
                self.logs()
            );
        }
    }

    /// The `role` field of `INFO replication` of the running server on `port`
    /// (`master` or `slave`), or `None` if it does not answer.
    pub fn role(&self, port: u16) -> Option<String> {
        let server = self.servers.iter().flatten().find(|s| s.port() == port)?;
        let mut con = server
            .client()
            .get_connection_with_timeout(IO_TIMEOUT)
            .ok()?;
        info(&mut con, "replication", "role")
    }

    /// True if the running server on `port` says `role:master`.
    fn is_master(&self, port: u16) -> bool {
        self.role(port).as_deref() == Some("master")
    }

    /// Every sentinel's log, for failure messages.
    pub fn logs(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| {
                format!(
                    "---- sentinel on port {} ----\n{}",
                    s.port,
                    s.log().trim_end()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until each sentinel knows the replica (up) and the two other sentinels.
    fn wait_for_discovery(&self) {
        let deadline = Instant::now() + DISCOVERY_TIMEOUT;
        for sentinel in &self.sentinels {
            loop {
                let info = sentinel.master_info().unwrap_or_default();
                let field = |name: &str| {
                    info.iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.as_str())
                };
                let replicas_up = sentinel.replicas_up();
                if field("num-slaves") == Some("1")
                    && field("num-other-sentinels") == Some(&(SENTINELS - 1).to_string())
                    && replicas_up == 1
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{}: the sentinels did not discover the replica and each other within \
                     {DISCOVERY_TIMEOUT:?}: {info:?}\n{}",
                    self.binary.name(),
                    self.logs()
                );
                thread::sleep(POLL_INTERVAL);
            }
        }
    }
}

impl SentinelProcess {
    /// How many replicas this sentinel sees as up (connected, not `s_down`).
    fn replicas_up(&self) -> usize {
        let Ok(mut con) = self.connection() else {
            return 0;
        };
        let replicas: Vec<Vec<String>> = redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg(MASTER_NAME)
            .query(&mut con)
            .unwrap_or_default();
        replicas
            .iter()
            .filter(|flat| {
                flat.chunks(2).any(|pair| {
                    matches!(pair, [name, flags] if name == "flags"
                        && flags == "slave")
                }) && flat.chunks(2).any(|pair| {
                    matches!(pair, [name, link] if name == "master-link-status" && link == "ok")
                })
            })
            .count()
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
        // The sentinels go first, so none starts a failover while the servers stop.
        self.sentinels.clear();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

/// The value of `field` in `INFO <section>`, or `None` if `INFO` fails or lacks it.
fn info(con: &mut redis::Connection, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO").arg(section).query(con).ok()?;
    info.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then(|| value.trim().to_owned())
    })
}
