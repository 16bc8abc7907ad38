//! The `redlimit` client against real servers: every operation on Redis 7.0, Redis 8.2
//! and Valkey 9.1 over RESP2 and RESP3, compared with the module's raw replies and with
//! the in-memory backend; and fault tests that kill the server or make it hang
//! (`SIGSTOP`) under each failure policy, with the circuit breaker, the denied-key
//! cache and recovery.
//!
//! Build the module first (`cargo build -p redlimit-module`). Timings are printed, and
//! asserted only with generous bounds: the machines running this are loaded.

// Shared: servers, limiters on both protocols, raw commands; failing servers.
#[path = "client/fault.rs"]
mod fault;
#[path = "client/support.rs"]
mod support;

#[path = "client/all.rs"]
mod all;
#[path = "client/breaker.rs"]
mod breaker;
#[path = "client/cluster.rs"]
mod cluster;
#[path = "client/decisions.rs"]
mod decisions;
#[path = "client/deny_cache.rs"]
mod deny_cache;
#[path = "client/engines.rs"]
mod engines;
#[path = "client/errors.rs"]
mod errors;
#[path = "client/leases.rs"]
mod leases;
#[path = "client/memory.rs"]
mod memory;
#[path = "client/outage.rs"]
mod outage;
#[path = "client/outage_operations.rs"]
mod outage_operations;
#[path = "client/reconnect.rs"]
mod reconnect;
#[path = "client/refusing.rs"]
mod refusing;
#[path = "client/reset.rs"]
mod reset;
#[path = "client/settings.rs"]
mod settings;
#[path = "client/status.rs"]
mod status;
#[path = "client/storm.rs"]
mod storm;
#[path = "client/throttle.rs"]
mod throttle;
#[path = "client/verify.rs"]
mod verify;
#[path = "client/wait.rs"]
mod wait;
