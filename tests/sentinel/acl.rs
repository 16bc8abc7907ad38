//! The least-privilege application user of `docs/operations.md`, for real: created with
//! `ACL SETUSER` on each server, the client authenticating as it decides, and the same
//! user cannot read or write anything else (other commands, other keys, RL.SETSTATE).
//! Behind Sentinel the client also needs `ROLE` (it asks the named primary its role
//! before using it).

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{RedisConnectionInfo, Value};
use redlimit::{Backend, FailurePolicy, Policy, RateLimiter, Source};
use redlimit_test_support::{
    Flavor, SentinelBuilder, Server, ServerBinary, ServerBuilder, available_servers, module_path,
};

const USER: &str = "app";
const PASSWORD: &str = "app-secret";

/// The commands an application calls, named one by one (Redis 7.0 has no `@redlimit`
/// category, and puts module commands in no category at all).
const EXPLICIT: &str = "+rl.tokenbucket +rl.throttle +rl.sliding +rl.fixed +rl.all \
                        +rl.acquire +rl.release +rl.status +rl.reset";
/// The same with the module's category (Redis 7.4+, Valkey 8+), without the command
/// that writes raw state.
const BY_CATEGORY: &str = "+@redlimit -rl.setstate";

/// `ACL SETUSER app reset on >app-secret ~rl:* resetchannels -@all <commands>`.
fn set_user(server: &Server, commands: &str) {
    let mut con = server.connection();
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER").arg(USER);
    for rule in [
        "reset",
        "on",
        &format!(">{PASSWORD}"),
        "~rl:*",
        "resetchannels",
        "-@all",
    ] {
        cmd.arg(rule);
    }
    for rule in commands.split_whitespace() {
        cmd.arg(rule);
    }
    let () = cmd
        .query(&mut con)
        .unwrap_or_else(|e| panic!("ACL SETUSER {USER} ... {commands}: {e}"));
}

/// The rule sets every server takes: the explicit list, and the category where it exists.
fn rule_sets(binary: &ServerBinary) -> Vec<&'static str> {
    match binary.flavor {
        Flavor::Redis70 => vec![EXPLICIT],
        _ => vec![EXPLICIT, BY_CATEGORY],
    }
}

fn limiter(backend: Backend) -> RateLimiter {
    RateLimiter::builder(backend)
        .timeout(std::time::Duration::from_secs(2))
        .on_failure(FailurePolicy::Error)
        .build()
        .unwrap()
}

/// Every client operation works as the application user, on its keys.
async fn decides_as_the_user(limiter: &RateLimiter, who: &str) {
    let bucket = Policy::token_bucket(2, 1, 60_000).unwrap();
    let first = limiter.check("rl:user:1", &bucket).await.unwrap();
    assert_eq!(
        (first.allowed, first.remaining, first.source),
        (true, 1, Source::Server),
        "{who}"
    );
    let throttle = Policy::throttle(1, 1, 60).unwrap();
    assert!(limiter.check("rl:cell:1", &throttle).await.unwrap().allowed);
    let minute = Policy::sliding(5, 60_000).unwrap();
    let hour = Policy::fixed(100, 3_600_000).unwrap();
    let all = limiter
        .check_all(&[("rl:{user:1}:m", minute), ("rl:{user:1}:h", hour)], 1)
        .await
        .unwrap();
    assert!(all.allowed, "{who}: {all:?}");
    let slots = redlimit::Concurrency::new(1, 60_000).unwrap();
    assert!(
        limiter
            .acquire("rl:jobs", &slots, "job-1")
            .await
            .unwrap()
            .allowed
    );
    assert!(limiter.release("rl:jobs", "job-1").await.unwrap(), "{who}");
    let status = limiter.status("rl:user:1").await.unwrap().unwrap();
    assert_eq!(status.decision.remaining, 0, "{who}: {status:?}");
    assert_eq!(limiter.reset(&["rl:user:1"]).await.unwrap(), 1, "{who}");

    // A key outside the prefix is refused by the server, not decided by a fallback.
    let refused = limiter.check("other:1", &bucket).await.unwrap_err();
    assert!(
        refused.to_string().contains("NOPERM") && !refused.is_unavailable(),
        "{who}: {refused}"
    );
}

/// What the user must not do, on a raw connection authenticated as it.
fn refuses_everything_else(server: &Server, who: &str) {
    let url = format!("redis://{USER}:{PASSWORD}@127.0.0.1:{}/", server.port());
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let state: Vec<u8> = {
        let mut admin = server.connection();
        let _: Vec<i64> = redis::cmd("RL.TOKENBUCKET")
            .arg("rl:src")
            .arg(5)
            .arg(1)
            .arg(1000)
            .query(&mut admin)
            .unwrap();
        redlimit_test_support::stored_state(&mut admin, "rl:src").unwrap()
    };
    // Every key of RL.ALL is checked: one outside the prefix is refused even next to
    // one inside it.
    let mut all_outside = redis::cmd("RL.ALL");
    all_outside.arg(2).arg("rl:a").arg("other:b");
    all_outside.arg(&["SLIDING", "3", "60000", "TOKENBUCKET", "5", "1", "3600000"]);
    let refused: [(&str, redis::Cmd); 10] = [
        ("RL.ALL with a key elsewhere", all_outside),
        (
            "GET on its prefix",
            redis::cmd("GET").arg("rl:src").to_owned(),
        ),
        (
            "SET on its prefix",
            redis::cmd("SET").arg("rl:x").arg(1).to_owned(),
        ),
        (
            "DEL on its prefix",
            redis::cmd("DEL").arg("rl:src").to_owned(),
        ),
        (
            "GET elsewhere",
            redis::cmd("GET").arg("session:1").to_owned(),
        ),
        (
            "RL.SETSTATE",
            redis::cmd("RL.SETSTATE").arg("rl:x").arg(&state).to_owned(),
        ),
        (
            "RL.TOKENBUCKET elsewhere",
            redis::cmd("RL.TOKENBUCKET")
                .arg("other:1")
                .arg(5)
                .arg(1)
                .arg(1000)
                .to_owned(),
        ),
        ("KEYS", redis::cmd("KEYS").arg("*").to_owned()),
        ("FLUSHALL", redis::cmd("FLUSHALL")),
        (
            "CONFIG SET",
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("redlimit.clock-offset-ms")
                .arg(1)
                .to_owned(),
        ),
    ];
    for (what, cmd) in refused {
        let reply: redis::RedisResult<Value> = cmd.query(&mut con);
        let error = reply.expect_err(&format!("{who}: {what} is refused"));
        assert_eq!(error.code(), Some("NOPERM"), "{who}: {what}: {error}");
    }
    let allowed: Vec<i64> = redis::cmd("RL.TOKENBUCKET")
        .arg("rl:raw")
        .arg(5)
        .arg(1)
        .arg(1000)
        .query(&mut con)
        .unwrap();
    assert_eq!(allowed[..3], [1, 5, 4], "{who}");
}

#[test]
fn the_application_user_decides_on_its_prefix_and_nothing_else() {
    let rt = super::runtime();
    for binary in available_servers() {
        let server = ServerBuilder::new(&binary).module(module_path()).start();
        for rules in rule_sets(&binary) {
            let who = format!("{} with {rules}", binary.name());
            set_user(&server, rules);
            for protocol in ["", "?protocol=resp3"] {
                let url = format!(
                    "redis://{USER}:{PASSWORD}@127.0.0.1:{}/{protocol}",
                    server.port()
                );
                let () = redis::cmd("FLUSHALL")
                    .query(&mut server.connection())
                    .unwrap();
                let limiter = limiter(Backend::redis(&url).unwrap());
                rt.block_on(decides_as_the_user(&limiter, &format!("{who} {protocol}")));
            }
            refuses_everything_else(&server, &who);
            println!("{who}: the application user decides on rl:* and nothing else");
        }
    }
}

/// A Sentinel client authenticating to the data nodes as `USER`.
fn sentinel_limiter(urls: Vec<String>, master: &str) -> RateLimiter {
    let node = SentinelNodeConnectionInfo {
        tls_mode: None,
        redis_connection_info: Some(RedisConnectionInfo {
            username: Some(USER.to_owned()),
            password: Some(PASSWORD.to_owned()),
            ..RedisConnectionInfo::default()
        }),
    };
    let client = SentinelClient::build(
        urls,
        master.to_owned(),
        Some(node),
        SentinelServerType::Master,
    )
    .unwrap();
    limiter(Backend::sentinel(client))
}

#[test]
fn behind_sentinel_the_application_user_also_needs_role() {
    let rt = super::runtime();
    let binaries = available_servers();
    // One Redis and Valkey: the sentinel side does not depend on the server version.
    for binary in binaries
        .iter()
        .filter(|b| matches!(b.flavor, Flavor::Redis82 | Flavor::Valkey91))
    {
        let group = SentinelBuilder::new(binary).module(module_path()).start();
        let primary = group.primary();
        let who = binary.name();
        let bucket = Policy::token_bucket(2, 1, 60_000).unwrap();

        // Without ROLE the client cannot tell the named server is a primary.
        set_user(primary, EXPLICIT);
        let limiter = sentinel_limiter(group.sentinel_urls(), group.master_name());
        let error = rt
            .block_on(limiter.check("rl:user:1", &bucket))
            .unwrap_err();
        assert!(error.to_string().contains("NOPERM"), "{who}: {error}");

        // With it, it decides. The user is set on the replica too: ACLs do not replicate.
        let rules = format!("{EXPLICIT} +role");
        for port in group.server_ports() {
            set_user(group.server(port), &rules);
        }
        let limiter = sentinel_limiter(group.sentinel_urls(), group.master_name());
        let decision = rt.block_on(limiter.check("rl:user:1", &bucket)).unwrap();
        assert_eq!(
            (decision.allowed, decision.source),
            (true, Source::Server),
            "{who}: {decision:?}"
        );
    }
}
