//! Real `redis-server` / `valkey-server` processes for the redlimit live tests.
//!
//! [`available_servers`] finds the servers installed by `scripts/install-deps.sh`
//! (Redis 7.0, Redis 8.2, Valkey 9.1); [`ServerBuilder`] starts one on a free port in a
//! temporary directory, optionally with the redlimit module ([`module_path()`]) and as a
//! replica of another; the [`Server`] is killed when dropped, and shows its log when the
//! test fails.
//!
//! ```
//! use redlimit_test_support::{ServerBuilder, available_servers};
//!
//! for binary in available_servers() {
//!     let primary = ServerBuilder::new(&binary).start();
//!     let replica = ServerBuilder::new(&binary).replica_of(&primary).start();
//!     replica.wait_for_sync();
//!
//!     let pong: String = redis::cmd("PING").query(&mut primary.connection()).unwrap();
//!     assert_eq!(pong, "PONG", "{}", binary.name());
//! }
//! ```
//!
//! Live tests load the module, which `cargo test` does not build
//! (`cargo build -p redlimit-module` first, or `--release`: the newer build is used):
//!
//! ```no_run
//! use redlimit_test_support::{ServerBuilder, available_servers, module_path};
//!
//! for binary in available_servers() {
//!     let server = ServerBuilder::new(&binary).module(module_path()).start();
//!     // ... RL.* commands through server.connection()
//! }
//! ```
//!
//! [`snapshot`], [`status`] and [`set_clock_offset`] read a limiter key exactly and move
//! the module's test clock (see the `limiter` helpers).
//!
//! # Missing servers fail the tests
//!
//! The live tests need all three servers. When one is missing, [`available_servers`]
//! panics, naming it and `scripts/install-deps.sh`: a test suite that passes because
//! it tested nothing would say the limiter works when nobody checked. To run anyway with
//! the servers there are, say so explicitly:
//!
//! ```text
//! REDLIMIT_SKIP_MISSING_SERVERS=1 cargo test
//! ```
//!
//! The missing servers' tests are then skipped, and a framed notice on stderr lists them
//! (shown as it happens under `cargo test`; under `cargo nextest` with `--no-capture`).
//! `scripts/test.sh` sets `REDLIMIT_REQUIRE_ALL_SERVERS=1`, which overrides the skip.
//!
//! # Environment
//!
//! - `REDLIMIT_SERVERS` (e.g. `redis-8.2,valkey-9.1`) restricts the servers on purpose.
//! - `REDLIMIT_SKIP_MISSING_SERVERS=1` skips the missing servers (loudly) instead of
//!   failing; `REDLIMIT_REQUIRE_ALL_SERVERS=1` forbids that.
//! - `REDLIMIT_REDIS_7_0_BIN`, `REDLIMIT_REDIS_8_2_BIN`, `REDLIMIT_VALKEY_9_1_BIN` point at
//!   a server binary elsewhere ([`Flavor::path_variable`]).
//! - `REDLIMIT_TEST_ENGINE=scripts|auto` runs the client suites on servers without the
//!   module, through the client's Lua scripts ([`test_engine`]).
//! - `REDLIMIT_MODULE` points at another build of the module; without it [`module_path()`]
//!   takes the newer of `target/debug` and `target/release`, and warns when that build is
//!   older than the module's sources.

mod binaries;
mod cluster;
mod engine;
mod limiter;
mod report;
mod sentinel;
mod server;

pub use binaries::{
    Flavor, REQUIRE_ALL_SERVERS, SKIP_MISSING_SERVERS, ServerBinary, available_servers,
    installed_servers, module_path, optimized_module_path, release_module_path, repo_root,
};
pub use cluster::{Cluster, ClusterBuilder, NodeInfo, SLOTS, SlotMigration, key_slot};
pub use engine::{TestEngine, test_engine};
pub use limiter::{
    CLOCK_OFFSET_CONFIG, KeySnapshot, Status, aof_size, digest_value, info_value, set_clock_offset,
    snapshot, state_from_dump, status, stored_state,
};
pub use report::{load_average, median, min_max, shell_line};
pub use sentinel::{MASTER_NAME, SentinelBuilder, SentinelGroup};
pub use server::{Server, ServerBuilder};
/// The directory [`Server::kill`] and [`Server::stop`] hand back, re-exported so that
/// tests can keep it (to restart a server in it) without depending on `tempfile`.
pub use tempfile::TempDir;
