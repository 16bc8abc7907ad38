//! Who is asking, by address: the peer, missing connect info, trusted proxies
//! (`X-Forwarded-For`, RFC 7239 `Forwarded`, a CDN header), spoofing from untrusted
//! peers, IPv6 grouped by /64.

use crate::support::{app_for, capture_logs, get, ip_key, keys, remaining};
use axum::http::StatusCode;

/// One rule over `/api/**`, per client IP, a bucket of `capacity` that refills only
/// after an hour: every request is visible in Redis as one token spent.
fn by_ip(capacity: u64, identity: &str) -> String {
    format!(
        r#"
        [identity]
        {identity}

        [[rules]]
        name = "api"
        path = "/api/**"
        limits = [{{ name = "burst", algorithm = "token_bucket", capacity = {capacity}, refill_tokens = 1, refill_ms = 3600000 }}]
        "#
    )
}

const TRUSTED: &str = r#"trusted_proxies = ["10.0.0.0/8", "2001:db8:ffff::/48"]"#;

/// Tokens spent from the bucket of client `ip` (0 when it has no key).
fn spent(server: &redlimit_test_support::Server, capacity: i64, ip: &str) -> i64 {
    remaining(server, &ip_key("api", ip, "burst")).map_or(0, |left| capacity - left)
}

#[tokio::test]
async fn each_peer_ip_has_its_own_limit_whatever_its_port() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &by_ip(3, ""));
    let a = |port| {
        let mut addr = crate::support::peer("198.51.100.1");
        addr.set_port(port);
        addr
    };
    for (i, port) in [1000, 2000, 3000].into_iter().enumerate() {
        let reply = get("/api/x").peer_addr(a(port)).send(&app).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.remaining("burst"), 2 - i as u64);
    }
    let refused = get("/api/x").peer_addr(a(4000)).send(&app).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let other = get("/api/x").from("198.51.100.2").send(&app).await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.remaining("burst"), 2);
    assert_eq!(spent(&server, 3, "198.51.100.1"), 3);
    assert_eq!(spent(&server, 3, "198.51.100.2"), 1);
}

#[tokio::test]
async fn a_bare_socket_address_extension_is_a_peer_too() {
    let Some(server) = crate::support::server() else {
        return;
    };
    // Outside axum (a plain hyper or tower stack), the peer may be a `SocketAddr`.
    let app = app_for(&server, &by_ip(3, ""));
    let mut request = get("/api/x").without_peer().request();
    request
        .extensions_mut()
        .insert(crate::support::peer("198.51.100.60"));
    let reply = crate::support::send(&app, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(spent(&server, 3, "198.51.100.60"), 1);
}

#[tokio::test]
async fn without_connect_info_a_limited_route_answers_500_and_logs_one_error() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &by_ip(3, ""));
    let (logs, _guard) = capture_logs();
    for _ in 0..3 {
        let reply = get("/api/x").without_peer().send(&app).await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{reply:?}");
        assert!(reply.body.contains("peer"), "{}", reply.body);
    }
    let errors = logs.lines_with("ERROR");
    assert_eq!(
        errors.len(),
        1,
        "one error, not one per request:\n{}",
        logs.text()
    );
    assert!(
        errors[0].contains("into_make_service_with_connect_info"),
        "the log says how to fix it: {}",
        errors[0]
    );
    // Unlimited and exempt routes do not need the peer.
    let health = get("/health").without_peer().send(&app).await;
    assert_eq!(health.status, StatusCode::OK);
    let unlimited = get("/elsewhere").without_peer().send(&app).await;
    assert_eq!(unlimited.status, StatusCode::OK);
    assert!(keys(&server).is_empty(), "{:?}", keys(&server));
}

#[tokio::test]
async fn untrusted_peers_cannot_choose_their_key_with_forwarding_headers() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let identity = format!("{TRUSTED}\nclient_ip_header = \"CF-Connecting-IP\"");
    let app = app_for(&server, &by_ip(3, &identity));
    let attacker = "203.0.113.9";
    // Each attempt claims another client: they all count for the attacker.
    let spoofs: [(&str, String); 5] = [
        ("x-forwarded-for", "198.51.100.10".to_owned()),
        ("x-forwarded-for", "198.51.100.11, 10.0.0.1".to_owned()),
        ("forwarded", "for=198.51.100.12".to_owned()),
        ("cf-connecting-ip", "198.51.100.13".to_owned()),
        ("x-real-ip", "198.51.100.14".to_owned()),
    ];
    let mut statuses = Vec::new();
    for (name, value) in &spoofs {
        let reply = get("/api/x")
            .from(attacker)
            .header(name, value)
            .send(&app)
            .await;
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(spent(&server, 3, attacker), 3);
    assert_eq!(
        keys(&server),
        [ip_key("api", attacker, "burst")],
        "no key for a claimed client"
    );
}

#[tokio::test]
async fn behind_trusted_proxies_the_rightmost_untrusted_forwarded_for_is_the_client() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &by_ip(3, TRUSTED));
    let proxy = "10.0.0.1";
    // The client forged the leftmost entries; our proxies appended the real address.
    let cases = [
        ("6.6.6.6, 198.51.100.7", "198.51.100.7"),
        ("1.1.1.1, 198.51.100.7, 10.0.0.2", "198.51.100.7"),
        ("2.2.2.2,198.51.100.7,10.1.2.3,10.0.0.9", "198.51.100.7"),
        ("198.51.100.8:5555", "198.51.100.8"),
        ("[2001:db8:77::1]:443", "2001:db8:77::/64"),
    ];
    for (xff, client) in cases {
        let reply = get("/api/x")
            .from(proxy)
            .header("x-forwarded-for", xff)
            .send(&app)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{xff}: {reply:?}");
        assert!(
            keys(&server).contains(&ip_key("api", client, "burst")),
            "{xff} should count for {client}: {:?}",
            keys(&server)
        );
    }
    assert_eq!(spent(&server, 3, "198.51.100.7"), 3);
    // Whatever it forges on the left, the client is limited.
    let refused = get("/api/x")
        .from(proxy)
        .header("x-forwarded-for", "9.9.9.9, 198.51.100.7")
        .send(&app)
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // Two header lines are one list.
    let refused = get("/api/x")
        .from(proxy)
        .header("x-forwarded-for", "9.9.9.9")
        .header("x-forwarded-for", "198.51.100.7")
        .send(&app)
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // Garbage where the client's address should be: the proxy saw that client.
    let garbage = get("/api/x")
        .from("10.0.0.3")
        .header("x-forwarded-for", "198.51.100.99, not-an-ip")
        .send(&app)
        .await;
    assert_eq!(garbage.status, StatusCode::OK);
    assert_eq!(spent(&server, 3, "10.0.0.3"), 1);
    assert_eq!(spent(&server, 3, "198.51.100.99"), 0);
    // A trusted proxy without forwarding headers is the client.
    get("/api/x").from("10.0.0.4").send(&app).await;
    assert_eq!(spent(&server, 3, "10.0.0.4"), 1);
}

#[tokio::test]
async fn bytes_a_client_writes_in_forwarded_headers_do_not_hide_the_address_the_proxy_appended() {
    let Some(server) = crate::support::server() else {
        return;
    };
    // Internal traffic (the proxies' own requests) is exempt, as operators often set.
    // `either`: both headers are read, so both can be poisoned.
    let either = format!("{TRUSTED}\nforwarded_header = \"either\"");
    let app = app_for(
        &server,
        &by_ip(3, &either).replace("[[rules]]", "[exempt]\nips = [\"10.0.0.0/8\"]\n\n[[rules]]"),
    );
    // The client sent non-text bytes; the proxy appended the address it saw.
    let poisoned: [(&str, &[u8]); 3] = [
        ("x-forwarded-for", b"\xff\xfe, 198.51.100.7"),
        ("x-forwarded-for", b"caf\xc3\xa9, 198.51.100.7"),
        ("forwarded", b"for=\"\xff\", for=198.51.100.7"),
    ];
    for (name, value) in poisoned {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let reply = get("/api/x")
                .from("10.0.0.1")
                .header_bytes(name, value)
                .send(&app)
                .await;
            statuses.push(reply.status.as_u16());
        }
        assert_eq!(
            statuses,
            [200, 200, 200, 429],
            "{name}: {} counts for 198.51.100.7, not the exempt proxy",
            String::from_utf8_lossy(value)
        );
        crate::support::delete(&server, &ip_key("api", "198.51.100.7", "burst"));
    }
}

#[tokio::test]
async fn rfc_7239_forwarded_names_the_client_and_wins_over_x_forwarded_for() {
    let Some(server) = crate::support::server() else {
        return;
    };
    // `either`: Forwarded when present, else X-Forwarded-For.
    let app = app_for(
        &server,
        &by_ip(3, &format!("{TRUSTED}\nforwarded_header = \"either\"")),
    );
    let cases = [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
        (r#"for=6.6.6.6, For="198.51.100.20:8080""#, "198.51.100.20"),
        (
            r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.2"#,
            "2001:db8:cafe::/64",
        ),
    ];
    for (forwarded, client) in cases {
        let reply = get("/api/x")
            .from("10.0.0.1")
            .header("forwarded", forwarded)
            .header("x-forwarded-for", "198.51.100.77")
            .send(&app)
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert!(
            keys(&server).contains(&ip_key("api", client, "burst")),
            "{forwarded} should count for {client}: {:?}",
            keys(&server)
        );
    }
    assert_eq!(spent(&server, 3, "198.51.100.77"), 0);
    // An obfuscated client (`for=_hidden`, `for=unknown`): the proxy that saw it counts.
    get("/api/x")
        .from("10.0.0.5")
        .header("forwarded", "for=_hidden")
        .send(&app)
        .await;
    assert_eq!(spent(&server, 3, "10.0.0.5"), 1);
}

#[tokio::test]
async fn naming_the_forwarding_header_the_proxy_writes_ignores_the_other() {
    let Some(server) = crate::support::server() else {
        return;
    };
    // nginx's `$proxy_add_x_forwarded_for` appends the client to X-Forwarded-For and
    // passes a client's own `Forwarded` through untouched.
    let xff = app_for(
        &server,
        &by_ip(
            3,
            &format!("{TRUSTED}\nforwarded_header = \"X-Forwarded-For\""),
        ),
    );
    for i in 1..=4 {
        let reply = get("/api/x")
            .from("10.0.0.1")
            .header("forwarded", &format!("for=6.6.6.{i}"))
            .header("x-forwarded-for", "198.51.100.7")
            .send(&xff)
            .await;
        assert_eq!(reply.status.as_u16(), if i <= 3 { 200 } else { 429 });
    }
    assert_eq!(spent(&server, 3, "198.51.100.7"), 3);
    assert_eq!(spent(&server, 3, "6.6.6.1"), 0);

    // A proxy that writes RFC 7239 `Forwarded`: a client's own X-Forwarded-For is not
    // believed, not even without a `Forwarded` header.
    let forwarded = app_for(
        &server,
        &by_ip(3, &format!("{TRUSTED}\nforwarded_header = \"forwarded\""))
            .replace("\"api\"", "\"api2\""),
    );
    get("/api/x")
        .from("10.0.0.1")
        .header("forwarded", "for=198.51.100.8")
        .header("x-forwarded-for", "6.6.6.6")
        .send(&forwarded)
        .await;
    get("/api/x")
        .from("10.0.0.1")
        .header("x-forwarded-for", "6.6.6.6")
        .send(&forwarded)
        .await;
    let keys = keys(&server);
    assert!(
        keys.contains(&ip_key("api2", "198.51.100.8", "burst")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&ip_key("api2", "10.0.0.1", "burst")),
        "{keys:?}"
    );
    assert!(!keys.iter().any(|k| k.contains("6.6.6.6")), "{keys:?}");
}

#[tokio::test]
async fn a_cdn_header_counts_only_when_configured_and_only_from_a_trusted_peer() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let request = |peer: &str| {
        get("/api/x")
            .from(peer)
            .header("cf-connecting-ip", "198.51.100.30")
            .header("x-forwarded-for", "198.51.100.31")
    };
    // Not configured: ignored even from a trusted proxy (X-Forwarded-For is used).
    let plain = app_for(&server, &by_ip(3, TRUSTED));
    request("10.0.0.1").send(&plain).await;
    assert_eq!(spent(&server, 3, "198.51.100.30"), 0);
    assert_eq!(spent(&server, 3, "198.51.100.31"), 1);

    let identity = format!("{TRUSTED}\nclient_ip_header = \"CF-Connecting-IP\"");
    let cdn = app_for(&server, &by_ip(3, &identity));
    request("10.0.0.1").send(&cdn).await;
    assert_eq!(spent(&server, 3, "198.51.100.30"), 1, "configured, trusted");
    request("203.0.113.50").send(&cdn).await;
    assert_eq!(spent(&server, 3, "198.51.100.30"), 1, "untrusted peer");
    assert_eq!(spent(&server, 3, "203.0.113.50"), 1);
    // A garbled CDN header from a trusted peer: the forwarding headers decide.
    get("/api/x")
        .from("10.0.0.1")
        .header("cf-connecting-ip", "garbage")
        .header("x-forwarded-for", "198.51.100.32")
        .send(&cdn)
        .await;
    assert_eq!(spent(&server, 3, "198.51.100.32"), 1);
}

#[tokio::test]
async fn ipv6_clients_in_one_64_share_a_limit() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &by_ip(3, ""));
    let same_64 = [
        "2001:db8:1:2::1",
        "2001:db8:1:2:ffff:ffff:ffff:fffe",
        "2001:db8:1:2:abcd::9",
    ];
    for ip in same_64 {
        let reply = get("/api/x").from(ip).send(&app).await;
        assert_eq!(reply.status, StatusCode::OK, "{ip}");
    }
    let refused = get("/api/x").from("2001:db8:1:2::42").send(&app).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let next_64 = get("/api/x").from("2001:db8:1:3::1").send(&app).await;
    assert_eq!(next_64.status, StatusCode::OK);
    assert_eq!(next_64.remaining("burst"), 2);
    assert_eq!(spent(&server, 3, "2001:db8:1:2::/64"), 3);
    assert_eq!(spent(&server, 3, "2001:db8:1:3::/64"), 1);
    // An IPv4 client on a dual-stack socket (`::ffff:a.b.c.d`) counts as IPv4.
    get("/api/x").from("::ffff:198.51.100.40").send(&app).await;
    assert_eq!(spent(&server, 3, "198.51.100.40"), 1);
}

#[tokio::test]
async fn the_ipv6_prefix_is_configurable() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, &by_ip(3, "ipv6_prefix = 128"));
    get("/api/x").from("2001:db8:1:2::1").send(&app).await;
    get("/api/x").from("2001:db8:1:2::2").send(&app).await;
    assert_eq!(spent(&server, 3, "2001:db8:1:2::1/128"), 1);
    assert_eq!(spent(&server, 3, "2001:db8:1:2::2/128"), 1);
}
