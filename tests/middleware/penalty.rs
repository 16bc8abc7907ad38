//! Progressive penalties: a caller refused again and again is blocked, doubling up to a
//! maximum, stored in Redis (another instance sees the block); on every server.

use crate::support::{app, get};
use redlimit::http::{Config, RateLimitLayer};
use redlimit_test_support::available_servers;
use std::time::Duration;

const RULE: &str = r#"
[[rules]]
name = "api"
path = "/api/**"
limits = "2/second"
penalty = { after = 2, block_ms = 2000, max_block_ms = 3000 }
"#;

#[tokio::test]
async fn repeat_offenders_are_blocked_longer_each_time_on_every_server() {
    let binaries = available_servers();
    assert!(!binaries.is_empty(), "no server found");
    for binary in binaries {
        println!("== {}", binary.name());
        let server = crate::support::start(&binary);
        let config = Config::from_toml(RULE).unwrap();
        let layer =
            |_: ()| RateLimitLayer::from_config(crate::support::limiter(&server), &config).unwrap();
        let (one, other) = (app(layer(())), app(layer(())));
        let status = |reply: &crate::support::Reply| reply.status.as_u16();
        // Two served, then two refusals by the limit: the second earns a 2 s block.
        let mut replies = Vec::new();
        for _ in 0..4 {
            replies.push(get("/api/x").send(&one).await);
        }
        let statuses: Vec<u16> = replies.iter().map(status).collect();
        assert_eq!(statuses, [200, 200, 429, 429]);
        assert_eq!(replies[2].must("retry-after"), "1", "the limit's wait");
        assert_eq!(replies[3].must("retry-after"), "2", "the block's");
        // Blocked, here and on another instance: the penalty is named, no limit asked.
        for app in [&one, &other] {
            let blocked = get("/api/x").send(app).await;
            assert_eq!(status(&blocked), 429);
            assert_eq!(
                blocked.json()["violated-policies"],
                serde_json::json!(["penalty"])
            );
            assert_eq!(blocked.header("ratelimit"), None);
            let retry: u64 = blocked.must("retry-after").parse().unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
        }
        // Another caller is not blocked.
        assert_eq!(
            status(&get("/api/x").from("192.0.2.2").send(&one).await),
            200
        );
        tokio::time::sleep(Duration::from_millis(2_100)).await;
        // The block is over; the next refusal doubles it (4 s), capped at 3 s.
        let mut after = Vec::new();
        for _ in 0..3 {
            after.push(get("/api/x").send(&one).await);
        }
        let statuses: Vec<u16> = after.iter().map(status).collect();
        assert_eq!(statuses, [200, 200, 429], "{after:?}");
        assert_eq!(after[2].must("retry-after"), "3", "doubled, at most 3 s");
        let blocked = get("/api/x").send(&other).await;
        assert_eq!(
            blocked.json()["violated-policies"],
            serde_json::json!(["penalty"])
        );
        let keys = crate::support::keys(&server);
        assert!(
            keys.contains(&"rl:{api:ip:192.0.2.1}:!penalty-strikes".to_owned()),
            "{keys:?}"
        );
    }
}

#[test]
fn penalty_fields_are_checked() {
    let bad = |penalty: &str, field: &str| {
        let text = RULE.replace(
            "{ after = 2, block_ms = 2000, max_block_ms = 3000 }",
            penalty,
        );
        let error = Config::from_toml(&text).unwrap_err();
        assert_eq!(error.field, field, "{error}");
    };
    bad("{ after = 0, block_ms = 1000 }", "rules[0].penalty.after");
    bad("{ after = 1, block_ms = 0 }", "rules[0].penalty.block_ms");
    bad(
        "{ after = 1, block_ms = 5000, max_block_ms = 10 }",
        "rules[0].penalty.max_block_ms",
    );
    bad("{ after = 1 }", "rules[0].penalty");
}
