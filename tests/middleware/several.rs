//! One rule, limits of several callers: per IP and per API key in one layer. On a
//! single server one `RL.ALL` decides them all or nothing; in a Cluster (their keys in
//! different slots) every slot is peeked, then counted. Either way a limit that refuses
//! drains no other, and the limits that did not refuse report what they have (a full
//! quota resets now: `t=0`). On every server, alone and as a Cluster.

use crate::support::{Reply, app, get, ip_key};
use redlimit::http::{Config, RateLimitLayer};
use redlimit::{Backend, FailurePolicy, RateLimiter};
use redlimit_test_support::{
    Cluster, ClusterBuilder, ServerBinary, available_servers, key_slot, module_path, status,
};
use std::time::Duration;

const RULE: &str = r#"
[[rules]]
name = "api"
path = "/api/**"
key = "ip"
limits = [
  { name = "per-ip", rate = "3/hour" },
  { name = "per-key", rate = "2/hour", key = "api_key" },
]
"#;

fn layer(limiter: RateLimiter) -> RateLimitLayer {
    let config = Config::from_toml(RULE).unwrap();
    RateLimitLayer::from_config(limiter, &config).unwrap()
}

fn violated(reply: &Reply) -> serde_json::Value {
    reply.json()["violated-policies"].clone()
}

/// The scenario; `left` reads what a limiter key has left (`None`: no key).
async fn scenario(limiter: RateLimiter, left: impl Fn(&str) -> Option<i64>) {
    let app = app(layer(limiter));
    let with = |key: &str, ip: &str| get("/api/x").from(ip).header("x-api-key", key);
    let per_ip = |ip: &str| ip_key("api", ip, "per-ip");

    // Key A from one address: two served, the third refused by the key's limit only.
    for expected in [(2, 1), (1, 0)] {
        let reply = with("key-a", "192.0.2.10").send(&app).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let left = (reply.remaining("per-ip"), reply.remaining("per-key"));
        assert_eq!(left, expected, "{reply:?}");
    }
    let refused = with("key-a", "192.0.2.10").send(&app).await;
    assert_eq!(refused.status, 429);
    assert_eq!(violated(&refused), serde_json::json!(["per-key"]));
    // The address's limit was not drained by the refused request, and says so.
    assert_eq!(refused.remaining("per-ip"), 1, "{refused:?}");
    assert_eq!(left(&per_ip("192.0.2.10")), Some(1));

    // Key B from the same address: the address's last request, then the address refuses;
    // B's own limit keeps what it had (r=1, not the r=0 of "as if counted").
    let served = with("key-b", "192.0.2.10").send(&app).await;
    assert_eq!(
        (served.status.as_u16(), served.remaining("per-ip")),
        (200, 0)
    );
    let refused = with("key-b", "192.0.2.10").send(&app).await;
    assert_eq!(refused.status, 429);
    assert_eq!(violated(&refused), serde_json::json!(["per-ip"]));
    assert_eq!(refused.remaining("per-key"), 1, "{refused:?}");

    // Key A from a fresh address: refused by the key; the address's limit is untouched
    // and full: r=3 with t=0 (nothing counted), not a reset time as if counted.
    let refused = with("key-a", "192.0.2.11").send(&app).await;
    assert_eq!(refused.status, 429);
    assert_eq!(violated(&refused), serde_json::json!(["per-key"]));
    assert_eq!(
        (
            refused.remaining("per-ip"),
            refused.item("ratelimit", "per-ip", "t")
        ),
        (3, 0),
        "{refused:?}"
    );
    let fresh = left(&per_ip("192.0.2.11"));
    assert!(matches!(fresh, None | Some(3)), "{fresh:?}");
}

fn single_limiter(url: &str) -> RateLimiter {
    RateLimiter::builder(crate::support::with_engine(Backend::redis(url).unwrap()))
        .timeout(Duration::from_secs(5))
        .on_failure(FailurePolicy::Error)
        .build()
        .unwrap()
}

#[tokio::test]
async fn per_ip_and_per_key_in_one_rule_on_every_server() {
    let binaries = available_servers();
    assert!(!binaries.is_empty(), "no server found");
    for binary in binaries {
        println!("== {}", binary.name());
        let server = crate::support::start(&binary);
        let left = |key: &str| crate::support::remaining(&server, key);
        scenario(single_limiter(&server.url()), left).await;
    }
}

async fn start_cluster(binary: &ServerBinary) -> Cluster {
    let builder = ClusterBuilder::new(binary).module(module_path());
    tokio::task::spawn_blocking(move || builder.start())
        .await
        .expect("the cluster starts")
}

/// Every key on every primary.
fn cluster_keys(cluster: &Cluster) -> Vec<String> {
    let mut keys = Vec::new();
    for port in cluster.primaries() {
        let mut found: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut cluster.connection(port))
            .unwrap();
        keys.append(&mut found);
    }
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_and_per_key_in_one_rule_on_a_cluster_of_every_server() {
    if !redlimit_test_support::test_engine().loads_module() {
        // It reads the module's keys by name and state on each shard; the scripts in a
        // cluster are covered by tests/scripts_topologies.rs.
        println!("module only: REDLIMIT_TEST_ENGINE is not module");
        return;
    }
    let binaries = available_servers();
    assert!(!binaries.is_empty(), "no server found");
    for binary in binaries {
        println!("== {} cluster", binary.name());
        let cluster = start_cluster(&binary).await;
        let limiter = RateLimiter::builder(Backend::cluster(cluster.urls()).unwrap())
            .timeout(Duration::from_secs(5))
            .on_failure(FailurePolicy::Error)
            .build()
            .unwrap();
        let left = |key: &str| {
            let port = cluster.owner_of(key.as_bytes());
            status(&mut cluster.connection(port), key)
                .map(|s| s.number("remaining") + s.number("allowed"))
        };
        scenario(limiter, left).await;
        // The two limits of one request were in two slots: the slot-by-slot path ran.
        let keys = cluster_keys(&cluster);
        let per_ip = ip_key("api", "192.0.2.10", "per-ip");
        let per_key: Vec<&String> = keys.iter().filter(|k| k.ends_with(":per-key")).collect();
        assert!(keys.contains(&per_ip), "{keys:?}");
        assert_eq!(per_key.len(), 2, "keys A and B: {keys:?}");
        for key in per_key {
            assert_ne!(
                key_slot(key.as_bytes()),
                key_slot(per_ip.as_bytes()),
                "{key}"
            );
        }
    }
}
