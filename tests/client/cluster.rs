//! `Backend::cluster` against a one-node cluster (all 16384 slots on one server): calls
//! are routed, an all-or-nothing check across slots is `is_cross_slot()` before
//! anything is sent (the client checks: some servers run a raw cross-slot `RL.ALL` on
//! one node instead of answering `CROSSSLOT`, a known module bug the cluster suite
//! tracks), and with a hash tag it is one `RL.ALL`. Topologies with several
//! nodes, resharding and failover are the cluster suite's (tests/cluster.rs).

use crate::support::{PROTOCOLS, binaries, command};
use redis::Connection;
use redlimit::{Backend, Concurrency, FailurePolicy, Policy, RateLimiter, Source};
use redlimit_test_support::{Server, ServerBuilder};
use std::time::{Duration, Instant};

/// A server with the module in cluster mode, given every slot; not ready for about
/// 2 s (a new primary waits before it serves writes), see [`wait_until_ok`].
fn one_node_cluster(binary: &redlimit_test_support::ServerBinary) -> Server {
    let server = crate::support::with_module(ServerBuilder::new(binary))
        .args([
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .start();
    let _: () = command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])
        .query(&mut server.connection())
        .unwrap();
    server
}

fn wait_until_ok(server: &Server) {
    let con = &mut server.connection();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster_ok(con) {
        assert!(Instant::now() < deadline, "the one-node cluster is not ok");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cluster_ok(con: &mut Connection) -> bool {
    let info: String = command(&["CLUSTER", "INFO"]).query(con).unwrap();
    info.contains("cluster_state:ok")
}

#[tokio::test]
async fn a_cluster_backend_routes_calls_and_refuses_cross_slot_checks() {
    crate::support::clear_of_window_end(crate::support::HOUR_MS).await;
    // Started together: each waits about 2 s before it serves.
    let servers: Vec<Server> = binaries().iter().map(one_node_cluster).collect();
    for server in &servers {
        wait_until_ok(server);
        let binary = server.binary();
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let limiter = RateLimiter::builder(crate::support::with_engine(
                Backend::cluster([protocol.url(server)]).unwrap(),
            ))
            .timeout(Duration::from_secs(5))
            .on_failure(FailurePolicy::Error)
            .build()
            .unwrap();
            let key = |k: &str| format!("{}:{k}", protocol.name());
            let minute = Policy::sliding(2, 60_000).unwrap();
            let hour = Policy::fixed(10, 3_600_000).unwrap();

            for k in ["a", "b", "c"] {
                let decision = limiter.check(key(k), &minute).await.unwrap();
                assert_eq!(decision.source, Source::Server, "{name}");
                assert_eq!(decision.remaining, 1, "{name}");
            }

            let crossing = [(key("a"), minute), (key("b"), hour)];
            let error = limiter.check_all(&crossing, 1).await.unwrap_err();
            assert!(error.is_cross_slot(), "{name}: {error}");
            let error = limiter.peek_all(&crossing, 1).await.unwrap_err();
            assert!(error.is_cross_slot(), "{name}: {error}");
            let tagged = [
                (key("{user:42}:minute"), minute),
                (key("{user:42}:hour"), hour),
            ];
            for expected in [true, true, false] {
                let all = limiter.check_all(&tagged, 1).await.unwrap();
                assert_eq!(
                    (all.allowed, all.source),
                    (expected, Source::Server),
                    "{name}"
                );
            }
            let hour_left = limiter.peek(&tagged[1].0, &hour, 0).await.unwrap();
            assert_eq!(hour_left.remaining, 8, "{name}: the denial counted nowhere");

            let slots = Concurrency::new(1, 10_000).unwrap();
            assert!(
                limiter
                    .acquire(key("lease"), &slots, "x")
                    .await
                    .unwrap()
                    .allowed
            );
            assert!(limiter.release(key("lease"), "x").await.unwrap(), "{name}");
            let status = limiter.status(key("a")).await.unwrap().unwrap();
            assert_eq!(status.decision.remaining, 0, "{name}");
            // Keys of several slots are deleted slot by slot.
            let keys = [
                key("a"),
                key("b"),
                key("c"),
                key("{user:42}:hour"),
                key("none"),
            ];
            assert_eq!(limiter.reset(&keys).await.unwrap(), 4, "{name}");
        }
    }
}
