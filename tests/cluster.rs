//! redlimit on Redis Cluster: 3 primaries + 3 replicas on loopback with the module on
//! every node (Redis 7.0, Redis 8.2, Valkey 9.1; one test function per server).
//!
//! - `routing`: the client sends every operation to the node that owns the key,
//!   follows `MOVED` and `ASK`, runs `RL.ALL` over hash-tagged keys, and refuses keys in
//!   different slots with a clear error (the raw command answers `CROSSSLOT`); and how
//!   decisions on a key asked on a slot's importing node fare under concurrency (see
//!   `support::ASKING_RACE`).
//! - `resharding`: while tasks keep deciding, slots holding limiter keys move to another
//!   primary (`CLUSTER SETSLOT` + `MIGRATE`; on Valkey 9 also `CLUSTER MIGRATESLOTS`);
//!   every moved key keeps its exact state and expiry, and the clients see no error.
//! - `failover`: a primary is killed under load; its replica takes over with the
//!   limiter state, and the clients come back to the server by themselves.
//!
//! The figures (keys moved, decisions during the move, redirects, decisions lost at
//! failover) are printed: `cargo nextest run -E 'binary(cluster)' --no-capture`.
//! Build the module first (`cargo build -p redlimit-module`).

#[path = "cluster/support.rs"]
mod support;

#[path = "cluster/failover.rs"]
mod failover;
#[path = "cluster/resharding.rs"]
mod resharding;
#[path = "cluster/routing.rs"]
mod routing;
