//! `ServerEngine`: the scripts decide on a server without the module (keys in their own
//! namespace, the script loaded again after `SCRIPT FLUSH`), `Auto` picks the module
//! where it is loaded and the scripts elsewhere, and `verify` says which.

use crate::support::{PROTOCOLS, binaries};
use redlimit::scripts::script_key;
use redlimit::{Backend, Engine, FailurePolicy, Policy, RateLimiter, ServerEngine, Source};
use redlimit_test_support::{ServerBuilder, module_path};
use std::time::Duration;

/// `EXISTS key`, the name as it is.
fn exists(con: &mut redis::Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query::<i64>(con).unwrap() == 1
}

fn limiter(url: &str, engine: ServerEngine) -> RateLimiter {
    RateLimiter::builder(Backend::redis(url).unwrap().with_engine(engine))
        .timeout(Duration::from_secs(5))
        .on_failure(FailurePolicy::Error)
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_scripts_decide_where_the_module_is_missing() {
    let policy = Policy::token_bucket(2, 1, 60_000).unwrap();
    for binary in binaries() {
        let server = ServerBuilder::new(&binary).start();
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let url = protocol.url(&server);
            for engine in [ServerEngine::Scripts, ServerEngine::Auto] {
                let key = format!("{name}:{engine:?}");
                let limiter = limiter(&url, engine);
                let info = limiter.verify().await.unwrap();
                assert_eq!(info.engine, Engine::Scripts, "{name} {engine:?}");
                assert_eq!(info.nodes.len(), 1, "{name}");
                assert_eq!(info.module_version(), None, "{name}");
                let mut answers = Vec::new();
                for _ in 0..3 {
                    let decision = limiter.check(&key, &policy).await.unwrap();
                    assert_eq!(decision.source, Source::Server, "{name}");
                    answers.push(decision.allowed);
                }
                assert_eq!(answers, [true, true, false], "{name} {engine:?}");
                let con = &mut server.connection();
                assert!(
                    !exists(con, &key),
                    "{name}: the module's name is left alone"
                );
                let stored = String::from_utf8(script_key(key.as_bytes())).unwrap();
                assert!(exists(con, &stored), "{name}: {stored}");
                // The script cache emptied (a restart, SCRIPT FLUSH): loaded again.
                let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(con).unwrap();
                let denied = limiter.check(&key, &policy).await.unwrap();
                assert!(!denied.allowed, "{name}");
                assert_eq!(limiter.reset(&[&key]).await.unwrap(), 1, "{name}");
                assert!(
                    limiter.check(&key, &policy).await.unwrap().allowed,
                    "{name}"
                );
            }
        }
    }
}

#[tokio::test]
async fn auto_takes_the_module_where_it_is_loaded() {
    let policy = Policy::fixed(5, 60_000).unwrap();
    for binary in binaries() {
        let server = ServerBuilder::new(&binary).module(module_path()).start();
        let auto = limiter(&server.url(), ServerEngine::Auto);
        let info = auto.verify().await.unwrap();
        assert_eq!(info.engine, Engine::Module, "{}", binary.name());
        assert!(auto.check("auto:m", &policy).await.unwrap().allowed);
        let con = &mut server.connection();
        assert!(exists(con, "auto:m"), "{}", binary.name());
        assert!(!exists(con, "{auto:m}|rls"), "{}", binary.name());
        // The scripts never read the module's key as theirs, nor start afresh beside it.
        let scripts = limiter(&server.url(), ServerEngine::Scripts);
        let error = scripts.check("auto:m", &policy).await.unwrap_err();
        assert!(error.is_wrong_type(), "{}: {error}", binary.name());
    }
}

#[tokio::test]
async fn auto_decides_when_the_server_refuses_command_info() {
    let policy = Policy::fixed(2, 60_000).unwrap();
    for binary in binaries() {
        let server = ServerBuilder::new(&binary).start();
        let con = &mut server.connection();
        let _: () = redis::cmd("ACL")
            .arg(&["SETUSER", "app", "on", ">secret", "~*", "+@all", "-command"])
            .query(con)
            .unwrap();
        let url = server.url().replace("redis://", "redis://app:secret@");
        let auto = limiter(&url, ServerEngine::Auto);
        // COMMAND INFO refused: the RL.* command is tried, `unknown command`, the scripts.
        let first = auto.check("acl:k", &policy).await.unwrap();
        assert_eq!(
            (first.allowed, first.remaining, first.source),
            (true, 1, Source::Server),
            "{}",
            binary.name()
        );
        assert!(exists(con, "{acl:k}|rls"), "{}", binary.name());
    }
}
