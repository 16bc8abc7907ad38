//! Starting, watching and stopping one server process.

use std::fs::{self, OpenOptions};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::binaries::ServerBinary;

/// How long a server may take to answer `PING` after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a replica may take to finish its initial sync.
const SYNC_TIMEOUT: Duration = Duration::from_secs(15);
/// How long background saves and AOF rewrites may take.
const PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a graceful `SHUTDOWN` may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Read/write timeout of [`Server::connection`], so a hung server fails the test.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when another process took ours before the server bound it.
const START_ATTEMPTS: usize = 5;
/// Pause before trying a given port again ([`ServerBuilder::port`]) when it was taken.
const PORT_RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Pause between two polls of a starting or syncing server.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The server's own log (`--logfile`), inside its directory.
const LOG_FILE: &str = "server.log";
/// Whatever the process wrote to stdout/stderr (config errors before the log opens).
const OUTPUT_FILE: &str = "server.out";

/// Configuration given unless the caller passes the same `--name` through
/// [`ServerBuilder::arg`]. `repl-diskless-sync-delay 0` makes a replica's first sync
/// start at once instead of after the default 5 s.
const OVERRIDABLE_DEFAULTS: [(&str, &str); 7] = [
    ("bind", "127.0.0.1"),
    ("save", ""),
    ("appendonly", "no"),
    ("protected-mode", "no"),
    ("enable-debug-command", "yes"),
    ("enable-module-command", "yes"),
    ("repl-diskless-sync-delay", "0"),
];

/// Builds and starts one server process. Consuming builder: chain the settings, end
/// with [`start`](ServerBuilder::start).
///
/// ```
/// use redlimit_test_support::{ServerBuilder, available_servers};
///
/// for binary in available_servers() {
///     let server = ServerBuilder::new(&binary)
///         .args(["--maxmemory", "64mb"])
///         .start();
///     let mut con = server.connection();
///     let config: Vec<String> = redis::cmd("CONFIG")
///         .arg("GET")
///         .arg("maxmemory")
///         .query(&mut con)
///         .unwrap();
///     assert_eq!(config, ["maxmemory", "67108864"]);
/// }
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    binary: ServerBinary,
    modules: Vec<Module>,
    args: Vec<String>,
    dir: Option<PathBuf>,
    primary_port: Option<u16>,
    port: Option<u16>,
}

/// A `--loadmodule` line.
#[derive(Debug, Clone)]
struct Module {
    path: PathBuf,
    args: Vec<String>,
}

impl ServerBuilder {
    /// A server of `binary` with the harness defaults: listens on 127.0.0.1 only, no RDB
    /// save points (`--save ""`), no AOF, `DEBUG` and `MODULE` commands enabled, a fresh
    /// temporary directory holding its data and its log.
    pub fn new(binary: &ServerBinary) -> Self {
        ServerBuilder {
            binary: binary.clone(),
            modules: Vec::new(),
            args: Vec::new(),
            dir: None,
            primary_port: None,
            port: None,
        }
    }

    /// Loads the module at `path` (`--loadmodule path`), typically
    /// [`module_path()`](crate::module_path()).
    ///
    /// ```no_run
    /// use redlimit_test_support::{ServerBuilder, available_servers, module_path};
    ///
    /// let binary = &available_servers()[0];
    /// let server = ServerBuilder::new(binary).module(module_path()).start();
    /// ```
    pub fn module(mut self, path: impl Into<PathBuf>) -> Self {
        self.modules.push(Module {
            path: path.into(),
            args: Vec::new(),
        });
        self
    }

    /// Appends arguments to the module added last: `--loadmodule path arg...`.
    ///
    /// # Panics
    ///
    /// If no module was added before.
    pub fn module_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let Some(module) = self.modules.last_mut() else {
            panic!("ServerBuilder::module_args called before ServerBuilder::module");
        };
        module.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Appends one command-line argument, e.g. `.arg("--appendonly").arg("yes")`.
    /// A `--name` given here replaces the harness default of the same name
    /// (`bind`, `save`, `appendonly`, `protected-mode`, `enable-debug-command`,
    /// `enable-module-command`, `repl-diskless-sync-delay`).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends several command-line arguments, e.g. `.args(["--save", "60 1"])`.
    /// Each item is one argv entry.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Keeps data and log in `dir` instead of a fresh temporary directory, so a test can
    /// restart a server from the RDB or AOF an earlier one left there. The caller owns
    /// `dir` (typically a [`TempDir`] it created); the server never deletes it.
    ///
    /// ```
    /// use redis::Commands;
    /// use redlimit_test_support::{ServerBuilder, available_servers};
    ///
    /// for binary in available_servers() {
    ///     let data = tempfile::tempdir().unwrap();
    ///     let first = ServerBuilder::new(&binary).dir(data.path()).start();
    ///     let mut con = first.connection();
    ///     let () = con.set("k", "v").unwrap();
    ///     let () = redis::cmd("SAVE").query(&mut con).unwrap();
    ///     drop(first);
    ///
    ///     let second = ServerBuilder::new(&binary).dir(data.path()).start();
    ///     let value: String = second.connection().get("k").unwrap();
    ///     assert_eq!(value, "v");
    /// }
    /// ```
    pub fn dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Listens on `port` instead of a free port chosen by the harness: with
    /// [`dir`](ServerBuilder::dir), this restarts a server that was killed or stopped
    /// where its clients expect it. Unlike a chosen port, a given port is not replaced
    /// when another process holds it: [`start`](ServerBuilder::start) retries it for a
    /// few seconds, then panics.
    ///
    /// ```
    /// use redlimit_test_support::{ServerBuilder, available_servers};
    ///
    /// for binary in available_servers() {
    ///     let first = ServerBuilder::new(&binary).start();
    ///     let port = first.port();
    ///     let dir = first.kill().expect("the harness made the directory");
    ///
    ///     let again = ServerBuilder::new(&binary).dir(dir.path()).port(port).start();
    ///     assert_eq!(again.port(), port);
    /// }
    /// ```
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Makes this server a replica of `primary` (`--replicaof 127.0.0.1 <port>`). Call
    /// [`Server::wait_for_sync`] after [`start`](ServerBuilder::start) before reading.
    pub fn replica_of(mut self, primary: &Server) -> Self {
        self.primary_port = Some(primary.port());
        self
    }

    /// Spawns the server and waits until it answers `PING`. If another process took the
    /// chosen port first, retries with a new one.
    ///
    /// # Panics
    ///
    /// If the server cannot be spawned, exits, or does not answer within 10 s; the
    /// message holds the command line and the server log.
    pub fn start(self) -> Server {
        let (dir, owned_dir) = match &self.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("redlimit-server-")
                    .tempdir()
                    .unwrap_or_else(|e| panic!("cannot create a temporary server dir: {e}"));
                (temp.path().to_path_buf(), Some(temp))
            }
        };

        for _ in 0..START_ATTEMPTS {
            let port = self.port.unwrap_or_else(free_port);
            let argv = self.argv(port, &dir);
            let mut server = self.spawn(port, &argv, &dir);
            match server.wait_until_ready() {
                Ok(()) => {
                    server.owned_dir = owned_dir;
                    return server;
                }
                Err(StartFailure::PortTaken) => {
                    if self.port.is_some() {
                        // The port is ours to wait for, not to replace.
                        thread::sleep(PORT_RETRY_PAUSE);
                    }
                    continue;
                }
                Err(failure) => {
                    let log = server.log();
                    drop(server);
                    panic!(
                        "{} failed to start: {failure}\ncommand: {} {}\n---- server log ----\n{log}",
                        self.binary.name(),
                        self.binary.path.display(),
                        shell_words(&argv),
                    );
                }
            }
        }
        panic!(
            "{} failed to start: the port was taken {START_ATTEMPTS} times in a row{}",
            self.binary.name(),
            self.port
                .map(|port| format!(" (port {port}, given)"))
                .unwrap_or_default()
        );
    }

    /// The full argument list for a server on `port` keeping its files in `dir`.
    fn argv(&self, port: u16, dir: &Path) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--logfile".into(),
            dir.join(LOG_FILE).display().to_string(),
            "--daemonize".into(),
            "no".into(),
        ];
        for (name, value) in OVERRIDABLE_DEFAULTS {
            let flag = format!("--{name}");
            if !self.args.contains(&flag) {
                argv.extend([flag, value.to_string()]);
            }
        }
        if let Some(primary_port) = self.primary_port {
            argv.extend([
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary_port.to_string(),
            ]);
        }
        for module in &self.modules {
            argv.extend(["--loadmodule".into(), module.path.display().to_string()]);
            argv.extend(module.args.iter().cloned());
        }
        argv.extend(self.args.iter().cloned());
        argv
    }

    /// Spawns the process; the returned server does not own `dir` yet.
    fn spawn(&self, port: u16, argv: &[String], dir: &Path) -> Server {
        let log_start = file_len(&dir.join(LOG_FILE));
        let output_start = file_len(&dir.join(OUTPUT_FILE));
        let output = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(OUTPUT_FILE))
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.join(OUTPUT_FILE).display()));
        let stderr = output
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate a file handle: {e}"));
        let child = Command::new(&self.binary.path)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot spawn {} ({}): {e}; run scripts/install-deps.sh",
                    self.binary.name(),
                    self.binary.path.display()
                )
            });
        Server {
            binary: self.binary.clone(),
            child,
            exited: false,
            port,
            dir: dir.to_path_buf(),
            owned_dir: None,
            primary_port: self.primary_port,
            log_start,
            output_start,
        }
    }
}

/// Why a spawned server is not ready.
#[derive(Debug)]
enum StartFailure {
    /// Another process holds the port: try another.
    PortTaken,
    /// The process ended.
    Exited(ExitStatus),
    /// No `PONG` in time.
    Timeout,
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartFailure::PortTaken => f.write_str("port taken"),
            StartFailure::Exited(status) => write!(f, "the process exited ({status})"),
            StartFailure::Timeout => write!(f, "no PONG within {READY_TIMEOUT:?}"),
        }
    }
}

/// A running server process. Dropping it kills the process (SIGKILL), waits for it and
/// deletes its temporary directory (unless [`ServerBuilder::dir`] gave one). If the
/// thread is panicking — a failing test — the drop first prints the server log to
/// stderr, which the test harness shows with the failure.
#[derive(Debug)]
pub struct Server {
    binary: ServerBinary,
    child: Child,
    exited: bool,
    port: u16,
    dir: PathBuf,
    owned_dir: Option<TempDir>,
    primary_port: Option<u16>,
    log_start: u64,
    output_start: u64,
}

impl Server {
    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operating system's id of the server process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Makes the server hang (`SIGSTOP`): it keeps its port and its connections, the
    /// kernel still accepts new ones, but nothing is answered until
    /// [`resume`](Server::resume). Dropping or killing a paused server works as usual.
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a [`pause`](Server::pause)d server run again (`SIGCONT`); it answers what
    /// it received meanwhile.
    ///
    /// # Panics
    ///
    /// If the signal cannot be sent.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Sends `SIG<name>` with the `kill` command (no libc binding needed).
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap_or_else(|e| panic!("cannot run kill -{name}: {e}"));
        assert!(
            status.success(),
            "kill -{name} {} ({} on port {}) failed: {status}",
            self.pid(),
            self.binary.name(),
            self.port
        );
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A client for this server.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url())
            .unwrap_or_else(|e| panic!("invalid url {}: {e}", self.url()))
    }

    /// A new connection with 10 s read and write timeouts, so a hung server fails the
    /// test instead of hanging it.
    ///
    /// # Panics
    ///
    /// If the server does not accept the connection.
    pub fn connection(&self) -> redis::Connection {
        self.try_connection(IO_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "cannot connect to {} on port {}: {e}",
                self.binary.name(),
                self.port
            )
        })
    }

    /// The directory holding the server's data files and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What this process wrote to its log file (and to stdout/stderr, if anything).
    /// When the directory is reused, earlier servers' lines are left out.
    pub fn log(&self) -> String {
        let mut log = read_from(&self.dir.join(LOG_FILE), self.log_start);
        let output = read_from(&self.dir.join(OUTPUT_FILE), self.output_start);
        if !output.trim().is_empty() {
            log.push_str("\n---- stdout/stderr ----\n");
            log.push_str(&output);
        }
        log
    }

    /// Which binary runs this server.
    pub fn binary(&self) -> &ServerBinary {
        &self.binary
    }

    /// Waits until this replica has finished its initial sync with its primary
    /// (`master_link_status:up`, `master_sync_in_progress:0`). To wait for later writes
    /// to arrive, send `WAIT 1 <ms>` to the primary.
    ///
    /// # Panics
    ///
    /// If the server was not built with [`ServerBuilder::replica_of`], or the sync does
    /// not finish within 15 s.
    pub fn wait_for_sync(&self) {
        let Some(primary_port) = self.primary_port else {
            panic!(
                "wait_for_sync on {} (port {}), which is not a replica",
                self.binary.name(),
                self.port
            );
        };
        self.poll_info("replication", SYNC_TIMEOUT, |info| {
            info_field(info, "master_link_status") == Some("up")
                && info_field(info, "master_sync_in_progress") == Some("0")
                && info_field(info, "master_port") == Some(primary_port.to_string().as_str())
        });
    }

    /// Waits until no `BGSAVE` or `BGREWRITEAOF` is running or scheduled, so that a
    /// restart from this directory sees their result.
    ///
    /// # Panics
    ///
    /// If they do not finish within 15 s.
    pub fn wait_for_background_saves(&self) {
        self.poll_info("persistence", PERSISTENCE_TIMEOUT, |info| {
            [
                "rdb_bgsave_in_progress",
                "aof_rewrite_in_progress",
                "aof_rewrite_scheduled",
            ]
            .iter()
            .all(|field| info_field(info, field) == Some("0"))
        });
    }

    /// Shuts the server down gracefully with `SHUTDOWN` — it saves an RDB if save points
    /// are configured and flushes the AOF if enabled — and waits for it to exit. Returns
    /// the temporary directory if the server owned it, so the caller can start another
    /// server on it with [`ServerBuilder::dir`]; `None` if the caller gave the directory.
    ///
    /// # Panics
    ///
    /// If the server answers `SHUTDOWN` with an error, or has not exited 15 s after it.
    pub fn stop(mut self) -> Option<TempDir> {
        if let Ok(mut con) = self.try_connection(IO_TIMEOUT) {
            // On success the server closes the connection instead of replying; an error
            // reply means it refused (e.g. the final RDB save failed).
            let reply: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut con);
            if let Err(e) = reply {
                assert!(
                    e.is_io_error() || e.is_connection_dropped(),
                    "{} on port {} refused SHUTDOWN: {e}",
                    self.binary.name(),
                    self.port
                );
            }
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while !self.has_exited() {
            assert!(
                Instant::now() < deadline,
                "{} on port {} still runs {SHUTDOWN_TIMEOUT:?} after SHUTDOWN",
                self.binary.name(),
                self.port
            );
            thread::sleep(POLL_INTERVAL);
        }
        self.owned_dir.take()
    }

    /// Kills the server at once (SIGKILL), like a crash, and waits for it to exit.
    /// Returns the temporary directory if the server owned it, like [`Server::stop`].
    pub fn kill(mut self) -> Option<TempDir> {
        self.kill_and_wait();
        self.owned_dir.take()
    }

    fn try_connection(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let con = self.client().get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        Ok(con)
    }

    /// Polls until the server answers `PING` and is our process (not another server
    /// that holds the port because ours failed to bind it).
    fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(if self.log().contains("Address already in use") {
                    StartFailure::PortTaken
                } else {
                    StartFailure::Exited(status)
                });
            }
            if let Some(pid) = self.answering_pid() {
                return if pid == self.child.id() {
                    Ok(())
                } else {
                    Err(StartFailure::PortTaken)
                };
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::Timeout);
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// The `process_id` of the server answering on our port, if one answers `PING`.
    fn answering_pid(&self) -> Option<u32> {
        let mut con = self.try_connection(Duration::from_secs(1)).ok()?;
        let pong: String = redis::cmd("PING").query(&mut con).ok()?;
        if pong != "PONG" {
            return None;
        }
        let info: String = redis::cmd("INFO").arg("server").query(&mut con).ok()?;
        info_field(&info, "process_id")?.parse().ok()
    }

    /// Polls `INFO <section>` until `done` holds.
    fn poll_info(&self, section: &str, timeout: Duration, done: impl Fn(&str) -> bool) {
        let mut con = self.connection();
        let deadline = Instant::now() + timeout;
        loop {
            let info: String = redis::cmd("INFO")
                .arg(section)
                .query(&mut con)
                .unwrap_or_else(|e| panic!("INFO {section} failed: {e}"));
            if done(&info) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} on port {}: INFO {section} not as expected after {timeout:?}:\n{info}",
                self.binary.name(),
                self.port
            );
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        self.exited |= status.is_some();
        status
    }

    fn has_exited(&mut self) -> bool {
        self.exited || self.exit_status().is_some()
    }

    fn kill_and_wait(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.exited = true;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- log of {} on port {} ({}) ----\n{}\n---- end of log ----",
                self.binary.name(),
                self.port,
                self.dir.display(),
                self.log()
            );
        }
        self.kill_and_wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|e| panic!("cannot find a free port on 127.0.0.1: {e}"))
}

/// `argv` as a shell would need it typed, for failure messages.
fn shell_words(argv: &[String]) -> String {
    let quote = |arg: &String| {
        if arg.is_empty() || arg.contains(char::is_whitespace) {
            format!("{arg:?}")
        } else {
            arg.clone()
        }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

/// The value of `field` in an `INFO` reply.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then(|| value.trim())
    })
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The contents of `path` after the first `start` bytes, or a note why it is unreadable.
fn read_from(path: &Path, start: u64) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = usize::try_from(start)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            String::from_utf8_lossy(bytes.get(start..).unwrap_or_default()).into_owned()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_field_finds_exact_names() {
        let info =
            "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\nmaster_link_status_x:down\r\n";
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "missing"), None);
    }

    #[test]
    fn a_port_held_by_another_server_is_reported_as_taken() {
        let Some(binary) = crate::available_servers().pop() else {
            eprintln!("skipped: no server (REDLIMIT_SKIP_MISSING_SERVERS=1)");
            return;
        };
        let holder = ServerBuilder::new(&binary).start();
        let dir = tempfile::tempdir().unwrap();
        let builder = ServerBuilder::new(&binary);
        let argv = builder.argv(holder.port(), dir.path());
        let mut second = builder.spawn(holder.port(), &argv, dir.path());

        let failure = second.wait_until_ready();

        assert!(
            matches!(failure, Err(StartFailure::PortTaken)),
            "{failure:?}"
        );
    }

    #[test]
    fn caller_args_replace_defaults_of_the_same_name() {
        let binary = ServerBinary {
            flavor: crate::Flavor::Redis82,
            path: PathBuf::from("/nonexistent"),
        };
        let argv = ServerBuilder::new(&binary)
            .args(["--save", "60 1"])
            .argv(6379, Path::new("/tmp/x"));
        let saves: Vec<_> = argv.iter().filter(|a| *a == "--save").collect();
        assert_eq!(saves.len(), 1);
        assert_eq!(argv.last().map(String::as_str), Some("60 1"));
        assert!(argv.windows(2).any(|w| w == ["--appendonly", "no"]));
    }
}
