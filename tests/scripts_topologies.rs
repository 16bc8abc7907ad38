//! The script engine in Redis Cluster and under Sentinel, on servers without the
//! module: `ServerEngine::Auto` finds no module and `verify` reports the scripts on
//! every primary; decisions on keys of every primary, all-or-nothing checks in one
//! slot, `CROSSSLOT` refused; and after a failover (a killed primary) the usage carried
//! by replication (`SET ... PXAT`) holds on the new primary, where the script is loaded
//! again after `NOSCRIPT`.

use redlimit::{Backend, Engine, FailurePolicy, Policy, RateLimiter, ServerEngine, Source};
use redlimit_test_support::{ClusterBuilder, SentinelBuilder, available_servers};
use std::time::Duration;

fn limiter(backend: Backend) -> RateLimiter {
    RateLimiter::builder(backend.with_engine(ServerEngine::Auto))
        .timeout(Duration::from_secs(5))
        .on_failure(FailurePolicy::Error)
        .build()
        .unwrap()
}

/// The replica of the server at `con` has every write made there so far. `WAIT` counts
/// from this connection's own last write, and the decisions went through the limiter's
/// connections: so a marker is written here first (`marker`: a key that server owns),
/// and the replication stream is ordered.
fn replicated(con: &mut redis::Connection, marker: &str) {
    let () = redis::cmd("SET").arg(marker).arg(1).query(con).unwrap();
    let acked: i64 = redis::cmd("WAIT").arg(1).arg(5_000).query(con).unwrap();
    assert_eq!(acked, 1, "the replica acknowledged the writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_decide_in_a_cluster_and_across_a_failover() {
    let policy = Policy::fixed(3, 3_600_000).unwrap();
    for binary in available_servers() {
        let name = binary.name();
        let mut cluster = tokio::task::spawn_blocking(move || ClusterBuilder::new(&binary).start())
            .await
            .unwrap();
        let limiter = limiter(Backend::cluster(cluster.urls()).unwrap());
        let info = limiter.verify().await.unwrap();
        assert_eq!(info.engine, Engine::Scripts, "{name}");
        assert_eq!(
            info.nodes.len(),
            3,
            "{name}: every primary loaded the script"
        );
        // Keys on every primary: two of three allowed, each.
        let keys: Vec<String> = (0..12).map(|n| format!("c:{n}")).collect();
        for key in &keys {
            for _ in 0..2 {
                let decision = limiter.check(key, &policy).await.unwrap();
                assert!(decision.allowed, "{name} {key}");
                assert_eq!(decision.source, Source::Server, "{name}");
            }
        }
        let owners: std::collections::BTreeSet<u16> = keys
            .iter()
            .map(|key| cluster.owner_of(&redlimit::scripts::script_key(key.as_bytes())))
            .collect();
        assert_eq!(owners.len(), 3, "{name}: keys on every primary");
        // All or nothing in one slot; across slots refused before sending.
        let both = [
            ("{u:1}:m".to_owned(), policy),
            ("{u:1}:h".to_owned(), Policy::fixed(1, 3_600_000).unwrap()),
        ];
        assert!(limiter.check_all(&both, 1).await.unwrap().allowed, "{name}");
        assert!(
            !limiter.check_all(&both, 1).await.unwrap().allowed,
            "{name}"
        );
        let split = [("a".to_owned(), policy), ("b".to_owned(), policy)];
        let error = limiter.check_all(&split, 1).await.unwrap_err();
        assert!(error.is_cross_slot(), "{name}: {error}");
        // The primary of c:0 dies; its replica takes over with the counts.
        let key = &keys[0];
        let owner = cluster.owner_of(&redlimit::scripts::script_key(key.as_bytes()));
        replicated(&mut cluster.connection(owner), &format!("{{{key}}}:marker"));
        cluster.kill(owner);
        let promoted = tokio::task::block_in_place(|| cluster.wait_for_failover(owner));
        assert_ne!(promoted, owner, "{name}");
        // The promoted replica holds the two counts (a failure here is replication or
        // failover; a failure below with this passing is the client's routing).
        let stored: i64 = redis::cmd("EXISTS")
            .arg(redlimit::scripts::script_key(key.as_bytes()))
            .query(&mut cluster.connection(promoted))
            .unwrap();
        assert_eq!(
            stored, 1,
            "{name}: the promoted replica {promoted} holds {key}"
        );
        let mut last = None;
        for _ in 0..100 {
            match limiter.check(key, &policy).await {
                Ok(decision) => {
                    last = Some(decision);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let decision = last.unwrap_or_else(|| panic!("{name}: no decision after the failover"));
        assert!(decision.allowed, "{name}: the third of three");
        assert_eq!(
            decision.remaining, 0,
            "{name}: the two counted before the failover held: {decision:?}"
        );
        assert!(
            !limiter.check(key, &policy).await.unwrap().allowed,
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripts_decide_under_sentinel_and_across_a_failover() {
    let policy = Policy::sliding(3, 3_600_000).unwrap();
    for binary in available_servers() {
        let name = binary.name();
        let mut group = tokio::task::spawn_blocking(move || SentinelBuilder::new(&binary).start())
            .await
            .unwrap();
        let backend = Backend::sentinels(group.sentinel_urls(), group.master_name(), None).unwrap();
        let limiter = limiter(backend);
        let info = limiter.verify().await.unwrap();
        assert_eq!(info.engine, Engine::Scripts, "{name}");
        for _ in 0..2 {
            assert!(
                limiter.check("s:k", &policy).await.unwrap().allowed,
                "{name}"
            );
        }
        replicated(&mut group.primary().connection(), "marker");
        let old = group.kill_primary();
        let new = tokio::task::block_in_place(|| group.wait_for_failover(old));
        assert_ne!(new, old, "{name}");
        let mut last = None;
        for _ in 0..100 {
            match limiter.check("s:k", &policy).await {
                Ok(decision) => {
                    last = Some(decision);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let decision = last.unwrap_or_else(|| panic!("{name}: no decision after the failover"));
        assert!(decision.allowed, "{name}");
        assert_eq!(
            decision.remaining, 0,
            "{name}: the usage followed the failover"
        );
        assert!(
            !limiter.check("s:k", &policy).await.unwrap().allowed,
            "{name}"
        );
    }
}
