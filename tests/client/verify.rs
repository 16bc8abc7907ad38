//! `RateLimiter::verify`, the startup check: the module found (with its `MODULE LIST`
//! version) on a server, on the primary Sentinel names, on every node of a cluster; a
//! server without it named in the error; `COMMAND INFO` when `MODULE LIST` is refused;
//! an unreachable server; the memory engine.

use crate::support::{PROTOCOLS, binaries, command};
use redlimit::{Backend, Engine, FailurePolicy, RateLimiter};
use redlimit_test_support::{ClusterBuilder, SentinelBuilder, ServerBuilder, module_path};
use std::time::Duration;

/// A server with the module, whatever engine the other suites run with: these tests
/// are about finding it.
fn start(binary: &redlimit_test_support::ServerBinary) -> redlimit_test_support::Server {
    ServerBuilder::new(binary).module(module_path()).start()
}

fn limiter(backend: Backend) -> RateLimiter {
    RateLimiter::builder(backend)
        .timeout(Duration::from_secs(5))
        .on_failure(FailurePolicy::Closed)
        .build()
        .unwrap()
}

/// `(address, module version)` of each node found.
fn nodes(info: &redlimit::BackendInfo) -> Vec<(String, Option<i64>)> {
    let mut nodes: Vec<_> = info
        .nodes
        .iter()
        .map(|node| (node.address.clone(), node.module_version))
        .collect();
    nodes.sort();
    nodes
}

#[tokio::test]
async fn a_server_with_the_module_reports_its_version() {
    for binary in binaries() {
        let server = start(&binary);
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let limiter = limiter(Backend::redis(&protocol.url(&server)).unwrap());
            let info = limiter.verify().await.unwrap();
            assert_eq!(info.engine, Engine::Module, "{name}");
            assert_eq!(
                nodes(&info),
                [(format!("127.0.0.1:{}", server.port()), Some(1))],
                "{name}"
            );
            assert_eq!(info.module_version(), Some(1), "{name}");
        }
    }
}

#[tokio::test]
async fn a_server_without_the_module_is_named_in_the_error() {
    for binary in binaries() {
        let server = ServerBuilder::new(&binary).start();
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let limiter = limiter(Backend::redis(&protocol.url(&server)).unwrap());
            let error = limiter.verify().await.unwrap_err();
            assert!(error.is_module_not_loaded(), "{name}: {error}");
            let text = error.to_string();
            let expected = format!(
                "redlimit module_not_loaded: the redlimit module is not loaded on 127.0.0.1:{}",
                server.port()
            );
            assert!(text.starts_with(&expected), "{name}: {text}");
            assert!(text.contains("--loadmodule"), "{name}: {text}");
        }
    }
}

/// An application user without `@admin` cannot run `MODULE LIST`: the module is found
/// by `COMMAND INFO RL.TOKENBUCKET` instead (version unknown), and its absence too.
#[tokio::test]
async fn without_module_list_permission_command_info_answers() {
    for binary in binaries() {
        let with = start(&binary);
        let without = ServerBuilder::new(&binary).start();
        for server in [&with, &without] {
            let _: () = command(&[
                "ACL", "SETUSER", "app", "on", ">secret", "~*", "+@all", "-@admin",
            ])
            .query(&mut server.connection())
            .unwrap();
        }
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let url = |server: &redlimit_test_support::Server| {
                protocol
                    .url(server)
                    .replace("redis://", "redis://app:secret@")
            };
            let info = limiter(Backend::redis(&url(&with)).unwrap())
                .verify()
                .await
                .unwrap();
            assert_eq!(
                nodes(&info),
                [(format!("127.0.0.1:{}", with.port()), None)],
                "{name}"
            );
            let error = limiter(Backend::redis(&url(&without)).unwrap())
                .verify()
                .await
                .unwrap_err();
            assert!(error.is_module_not_loaded(), "{name}: {error}");
            assert!(
                error.to_string().contains(&format!(
                    "the redlimit module is not loaded on 127.0.0.1:{}",
                    without.port()
                )),
                "{name}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_and_named() {
    let Some(binary) = binaries().into_iter().next() else {
        return;
    };
    let server = start(&binary);
    let (url, port) = (server.url(), server.port());
    server.kill();
    let error = limiter(Backend::redis(&url).unwrap())
        .verify()
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("checking the redlimit module on 127.0.0.1:{port}")),
        "{error}"
    );
}

#[tokio::test]
async fn the_memory_backend_is_the_memory_engine() {
    let info = RateLimiter::memory().verify().await.unwrap();
    assert_eq!(info.engine, Engine::Memory);
    assert!(info.nodes.is_empty());
    assert_eq!(info.module_version(), None);
}

/// Every primary of a cluster is asked: a primary left without the module is named
/// (and only it); once it has the module too, every primary is listed with the version.
#[tokio::test]
async fn every_cluster_node_is_checked() {
    for binary in binaries() {
        let cluster = ClusterBuilder::new(&binary).start();
        // The client connects to the primaries (they make every decision); replicas
        // are not reached. One primary is left without the module.
        let primaries = cluster.primaries();
        let (last, others) = primaries.split_last().unwrap();
        for &port in others {
            load_module(&mut cluster.connection(port));
        }
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let urls: Vec<String> = cluster
                .urls()
                .iter()
                .map(|url| match protocol {
                    crate::support::Protocol::Resp2 => url.clone(),
                    crate::support::Protocol::Resp3 => format!("{url}?protocol=resp3"),
                })
                .collect();
            let limiter = limiter(Backend::cluster(urls).unwrap());
            let error = limiter.verify().await.unwrap_err();
            assert!(error.is_module_not_loaded(), "{name}: {error}");
            let text = error.to_string();
            assert!(
                text.contains(&format!("not loaded on 127.0.0.1:{last}")),
                "{name}: {text}"
            );
            for port in others {
                assert!(!text.contains(&format!(":{port}")), "{name}: {text}");
            }
        }
        load_module(&mut cluster.connection(*last));
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let urls: Vec<String> = cluster
                .urls()
                .iter()
                .map(|url| match protocol {
                    crate::support::Protocol::Resp2 => url.clone(),
                    crate::support::Protocol::Resp3 => format!("{url}?protocol=resp3"),
                })
                .collect();
            let info = limiter(Backend::cluster(urls).unwrap())
                .verify()
                .await
                .unwrap();
            let mut expected: Vec<(String, Option<i64>)> = primaries
                .iter()
                .map(|port| (format!("127.0.0.1:{port}"), Some(1)))
                .collect();
            expected.sort();
            assert_eq!(nodes(&info), expected, "{name}");
        }
    }
}

/// Sentinel: the primary it names is checked (by its address).
#[tokio::test]
async fn the_primary_sentinel_names_is_checked() {
    for binary in binaries() {
        let group = SentinelBuilder::new(&binary).start();
        let primary = group.primary_port();
        let backend =
            || Backend::sentinels(group.sentinel_urls(), group.master_name(), None).unwrap();
        let error = limiter(backend()).verify().await.unwrap_err();
        assert!(error.is_module_not_loaded(), "{}: {error}", binary.name());
        assert!(
            error
                .to_string()
                .contains(&format!("not loaded on 127.0.0.1:{primary}")),
            "{}: {error}",
            binary.name()
        );
        load_module(&mut group.server(primary).connection());
        let info = limiter(backend()).verify().await.unwrap();
        assert_eq!(
            nodes(&info),
            [(format!("127.0.0.1:{primary}"), Some(1))],
            "{}",
            binary.name()
        );
    }
}

fn load_module(con: &mut redis::Connection) {
    let _: () = redis::cmd("MODULE")
        .arg("LOAD")
        .arg(module_path().to_str().unwrap())
        .query(con)
        .unwrap();
}
