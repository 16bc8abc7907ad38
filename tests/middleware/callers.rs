//! Who is asking, by credential: an API key header, a verified JWT's user and tier (and
//! every bad token falling back to the IP key with anonymous limits), and a custom
//! `Identify`.

use crate::support::{app, app_for, get, ip_key, layer, now_s, remaining, token, token_with};
use axum::http::StatusCode;
use axum::http::request::Parts;
use redlimit::http::{Caller, Identify, Identity};
use serde_json::json;

const SECRET: &str = "middleware-test-secret-0123456789";

/// `/api/**` per verified user: anonymous callers 2 (per IP), `free` 3, `pro` 5.
const BY_USER: &str = r#"
    [identity.jwt]
    secret = "middleware-test-secret-0123456789"

    [[rules]]
    name = "api"
    path = "/api/**"
    key = "user"
    limits = [{ name = "anon", algorithm = "token_bucket", capacity = 2, refill_tokens = 1, refill_ms = 3600000 }]
    tiers.free.limits = [{ name = "free", algorithm = "token_bucket", capacity = 3, refill_tokens = 1, refill_ms = 3600000 }]
    tiers.pro.limits = [{ name = "pro", algorithm = "token_bucket", capacity = 5, refill_tokens = 1, refill_ms = 3600000 }]
"#;

fn user(sub: &str, tier: Option<&str>) -> String {
    let mut claims = json!({ "sub": sub, "exp": now_s() + 3600 });
    if let Some(tier) = tier {
        claims["tier"] = json!(tier);
    }
    token(SECRET, &claims)
}

/// Sends `n` requests with `token` from `peer`; the statuses.
async fn statuses(app: &axum::Router, n: usize, token: &str, peer: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let reply = get("/api/x").from(peer).bearer(token).send(app).await;
        out.push(reply.status.as_u16());
    }
    out
}

#[tokio::test]
async fn a_valid_token_counts_per_user_across_addresses_with_its_tier_limits() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, BY_USER);
    let pro = user("alice", Some("pro"));
    // Five from five addresses: one budget, the pro one.
    let mut seen = Vec::new();
    for i in 0..5 {
        let reply = get("/api/x")
            .from(&format!("198.51.100.{i}"))
            .bearer(&pro)
            .send(&app)
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.policy_names(), ["pro"]);
        assert_eq!(reply.quota("pro"), 5);
        seen.push(reply.remaining("pro"));
    }
    assert_eq!(seen, [4, 3, 2, 1, 0]);
    assert_eq!(statuses(&app, 1, &pro, "198.51.100.9").await, [429]);

    // Another user has their own budget; the free tier's is 3.
    let free = user("bob", Some("free"));
    assert_eq!(
        statuses(&app, 4, &free, "198.51.100.0").await,
        [200, 200, 200, 429]
    );
    // A tier the rule does not list: the default limits, still per user.
    let odd = user("carol", Some("platinum"));
    assert_eq!(
        statuses(&app, 3, &odd, "198.51.100.0").await,
        [200, 200, 429]
    );
    let odd2 = user("dave", Some("platinum"));
    assert_eq!(statuses(&app, 1, &odd2, "198.51.100.0").await, [200]);
    // No IP key was touched by verified users.
    assert_eq!(
        remaining(&server, &ip_key("api", "198.51.100.0", "anon")),
        None
    );
}

#[tokio::test]
async fn missing_or_bad_tokens_fall_back_to_the_ip_key_and_anonymous_limits() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, BY_USER);
    let claims = json!({ "sub": "mallory", "tier": "pro", "exp": now_s() + 3600 });
    // `alg: none` with a forged tier: header and claims in base64url, no signature.
    let unsigned = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        base64url(claims.to_string().as_bytes())
    );
    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("garbage", Some("Bearer not.a.token".to_owned())),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                token(
                    SECRET,
                    &json!({ "sub": "mallory", "tier": "pro", "exp": now_s() - 3600 })
                )
            )),
        ),
        (
            "wrong signature",
            Some(format!(
                "Bearer {}",
                token("another-secret-of-enough-length", &claims)
            )),
        ),
        (
            "wrong algorithm",
            Some(format!(
                "Bearer {}",
                token_with(jsonwebtoken::Algorithm::HS512, SECRET, &claims)
            )),
        ),
        ("unsigned", Some(format!("Bearer {unsigned}"))),
        (
            "not a bearer",
            Some(format!("Basic {}", token(SECRET, &claims))),
        ),
    ];
    for (i, (what, authorization)) in cases.into_iter().enumerate() {
        let peer = format!("203.0.113.{}", i + 1);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut call = get("/api/x").from(&peer);
            if let Some(value) = &authorization {
                call = call.header("authorization", value);
            }
            let reply = call.send(&app).await;
            assert_eq!(reply.policy_names(), ["anon"], "{what}: {reply:?}");
            seen.push(reply.status.as_u16());
        }
        assert_eq!(seen, [200, 200, 429], "{what}: anonymous limits per IP");
        assert_eq!(
            remaining(&server, &ip_key("api", &peer, "anon")),
            Some(0),
            "{what}: the IP key counted"
        );
    }
    // A valid token from one of those exhausted addresses is its own caller.
    assert_eq!(
        statuses(&app, 1, &user("mallory", Some("pro")), "203.0.113.1").await,
        [200]
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, BY_USER);
    // RFC 9110 section 11.1: the authentication scheme is case-insensitive.
    let pro = user("frank", Some("pro"));
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let reply = get("/api/x")
            .header("authorization", &format!("{scheme} {pro}"))
            .send(&app)
            .await;
        assert_eq!(reply.policy_names(), ["pro"], "{scheme}: {reply:?}");
    }
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let strict = BY_USER.replace(
        "secret = \"middleware-test-secret-0123456789\"",
        "secret = \"middleware-test-secret-0123456789\"\nissuer = \"https://auth.example\"\naudience = \"api\"",
    );
    let app = app_for(&server, &strict);
    let claims = |iss: &str, aud: &str| json!({ "sub": "grace", "tier": "pro", "iss": iss, "aud": aud, "exp": now_s() + 600 });
    let tier = |claims: serde_json::Value| {
        let app = app.clone();
        async move {
            get("/api/x")
                .from("203.0.113.77")
                .bearer(&token(SECRET, &claims))
                .send(&app)
                .await
                .policy_names()
        }
    };
    assert_eq!(tier(claims("https://auth.example", "api")).await, ["pro"]);
    assert_eq!(tier(claims("https://evil.example", "api")).await, ["anon"]);
    assert_eq!(
        tier(claims("https://auth.example", "other")).await,
        ["anon"]
    );
    // Without them configured, tokens carrying `iss` and `aud` are accepted.
    let lax = app_for(&server, BY_USER);
    let reply = get("/api/x")
        .bearer(&token(SECRET, &claims("anyone", "anything")))
        .send(&lax)
        .await;
    assert_eq!(reply.policy_names(), ["pro"]);
}

#[tokio::test]
async fn a_configured_issuer_or_audience_is_required_not_just_checked_when_present() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let with = |fields: &str| {
        BY_USER.replace(
            "secret = \"middleware-test-secret-0123456789\"",
            &format!("secret = \"middleware-test-secret-0123456789\"\n{fields}"),
        )
    };
    let tier_of = |app: axum::Router, claims: serde_json::Value, peer: &'static str| async move {
        get("/api/x")
            .from(peer)
            .bearer(&token(SECRET, &claims))
            .send(&app)
            .await
            .policy_names()
    };
    let exp = now_s() + 600;
    // Issue 11: `{"sub":"carol","tier":"pro"}` signed with the right key got the pro
    // tier although the configuration names an issuer and an audience.
    let both = app_for(
        &server,
        &with("issuer = \"https://auth.example\"\naudience = \"api\""),
    );
    let bare = json!({ "sub": "carol", "tier": "pro", "exp": exp });
    assert_eq!(tier_of(both.clone(), bare, "203.0.113.80").await, ["anon"]);
    let no_aud =
        json!({ "sub": "carol", "tier": "pro", "iss": "https://auth.example", "exp": exp });
    assert_eq!(
        tier_of(both.clone(), no_aud, "203.0.113.81").await,
        ["anon"]
    );
    let no_iss = json!({ "sub": "carol", "tier": "pro", "aud": "api", "exp": exp });
    assert_eq!(
        tier_of(both.clone(), no_iss, "203.0.113.82").await,
        ["anon"]
    );
    // An `iss` that is not a string is no issuer.
    let odd_iss = json!({ "sub": "carol", "tier": "pro", "iss": 7, "aud": "api", "exp": exp });
    assert_eq!(
        tier_of(both.clone(), odd_iss, "203.0.113.83").await,
        ["anon"]
    );
    let full = json!({ "sub": "carol", "tier": "pro", "iss": "https://auth.example", "aud": ["api", "web"], "exp": exp });
    assert_eq!(tier_of(both, full, "203.0.113.84").await, ["pro"]);

    // Each one alone is required alone.
    let issuer_only = app_for(&server, &with("issuer = \"https://auth.example\""));
    let no_iss = json!({ "sub": "dan", "tier": "pro", "exp": exp });
    assert_eq!(
        tier_of(issuer_only.clone(), no_iss, "203.0.113.85").await,
        ["anon"]
    );
    let iss = json!({ "sub": "dan", "tier": "pro", "iss": "https://auth.example", "exp": exp });
    assert_eq!(tier_of(issuer_only, iss, "203.0.113.86").await, ["pro"]);
    let audience_only = app_for(&server, &with("audience = \"api\""));
    let no_aud = json!({ "sub": "erin", "tier": "pro", "exp": exp });
    assert_eq!(
        tier_of(audience_only.clone(), no_aud, "203.0.113.87").await,
        ["anon"]
    );
    let aud = json!({ "sub": "erin", "tier": "pro", "aud": "api", "exp": exp });
    assert_eq!(tier_of(audience_only, aud, "203.0.113.88").await, ["pro"]);
}

#[tokio::test]
async fn a_token_not_yet_valid_or_with_unreadable_times_is_no_token() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, BY_USER);
    let tier_of = |claims: serde_json::Value, peer: &'static str| {
        let app = app.clone();
        async move {
            get("/api/x")
                .from(peer)
                .bearer(&token(SECRET, &claims))
                .send(&app)
                .await
                .policy_names()
        }
    };
    // `nbf` an hour ahead (well past the 60 s leeway for clock skew): refused.
    let future = json!({ "sub": "ivan", "tier": "pro", "nbf": now_s() + 3600 });
    assert_eq!(tier_of(future, "203.0.113.90").await, ["anon"]);
    // Times that cannot be read are not skipped: refused.
    let text_exp = json!({ "sub": "ivan", "tier": "pro", "exp": "never" });
    assert_eq!(tier_of(text_exp, "203.0.113.91").await, ["anon"]);
    let text_nbf = json!({ "sub": "ivan", "tier": "pro", "nbf": "now" });
    assert_eq!(tier_of(text_nbf, "203.0.113.92").await, ["anon"]);
    // A past `nbf` (and a token without `exp`: no claim is required) is accepted.
    let past = json!({ "sub": "ivan", "tier": "pro", "nbf": now_s() - 60 });
    assert_eq!(tier_of(past, "203.0.113.93").await, ["pro"]);
}

#[tokio::test]
async fn an_empty_user_claim_is_no_user_and_counts_per_ip() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(&server, BY_USER);
    // Issue 11: every token with `"sub": ""` was one user "", one budget for all of
    // them, wherever they came from. Now: no user, so per IP, with the token's tier.
    let exp = now_s() + 3600;
    for (i, sub) in [json!(""), json!("   ")].into_iter().enumerate() {
        let empty = token(SECRET, &json!({ "sub": sub, "tier": "free", "exp": exp }));
        let first = format!("198.51.100.{}", 60 + 2 * i);
        let second = format!("198.51.100.{}", 61 + 2 * i);
        assert_eq!(
            statuses(&app, 4, &empty, &first).await,
            [200, 200, 200, 429],
            "{sub}: the free tier per IP"
        );
        assert_eq!(
            statuses(&app, 1, &empty, &second).await,
            [200],
            "{sub}: another IP has its own budget"
        );
        assert_eq!(
            remaining(&server, &ip_key("api", &first, "free")),
            Some(0),
            "{sub}: counted under the IP key"
        );
    }
    let user_keys: Vec<String> = crate::support::keys(&server)
        .into_iter()
        .filter(|key| key.contains(":user:"))
        .collect();
    assert_eq!(user_keys, Vec::<String>::new(), "no key of a user \"\"");
}

/// Base64url without padding.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[tokio::test]
async fn an_api_key_counts_per_key_and_no_key_counts_per_ip() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = app_for(
        &server,
        r#"
        [identity]
        api_key_header = "X-Client-Key"

        [[rules]]
        name = "api"
        path = "/api/**"
        key = "api_key"
        limits = [{ name = "burst", algorithm = "token_bucket", capacity = 2, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    let with_key = |key: &str, peer: &str| get("/api/x").from(peer).header("x-client-key", key);
    // One key from two addresses: one budget.
    assert_eq!(with_key("k-1", "198.51.100.1").send(&app).await.status, 200);
    assert_eq!(with_key("k-1", "198.51.100.2").send(&app).await.status, 200);
    assert_eq!(with_key("k-1", "198.51.100.3").send(&app).await.status, 429);
    // Another key from the same address: its own budget.
    assert_eq!(with_key("k-2", "198.51.100.1").send(&app).await.status, 200);
    // No key (or an empty one): the address counts.
    let no_key = get("/api/x").from("198.51.100.1").send(&app).await;
    assert_eq!(no_key.status, 200);
    assert_eq!(with_key("", "198.51.100.1").send(&app).await.status, 200);
    assert_eq!(
        get("/api/x").from("198.51.100.1").send(&app).await.status,
        429
    );
    assert_eq!(
        remaining(&server, &ip_key("api", "198.51.100.1", "burst")),
        Some(0)
    );
    // The key itself never reaches Redis, only its digest.
    let keys = crate::support::keys(&server);
    assert!(keys.iter().all(|k| !k.contains("k-1")), "{keys:?}");
}

/// Tenants named by `X-Tenant`, their plan by `X-Plan`; no header: the IP.
struct ByTenant;

impl Identify for ByTenant {
    fn identify(&self, request: &Parts, caller: &Caller) -> Option<Identity> {
        assert!(caller.ip.is_some(), "the caller is resolved first");
        let tenant = request.headers.get("x-tenant")?.to_str().ok()?;
        let plan = request
            .headers
            .get("x-plan")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Some(Identity {
            key: format!("tenant:{tenant}"),
            tier: plan,
        })
    }
}

#[tokio::test]
async fn a_custom_identify_names_the_caller_and_its_tier() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(
        &server,
        r#"
        [[rules]]
        name = "api"
        path = "/api/**"
        key = "custom"
        limits = [{ name = "basic", algorithm = "token_bucket", capacity = 1, refill_tokens = 1, refill_ms = 3600000 }]
        tiers.gold.limits = [{ name = "gold", algorithm = "token_bucket", capacity = 3, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    )
    .identify(ByTenant);
    let app = app(layer);
    let tenant = |name: &str, peer: &str| get("/api/x").from(peer).header("x-tenant", name);
    assert_eq!(tenant("acme", "198.51.100.1").send(&app).await.status, 200);
    let second = tenant("acme", "198.51.100.2").send(&app).await;
    assert_eq!(second.status, 429, "one tenant, one budget");
    let gold = |peer: &str| tenant("initech", peer).header("x-plan", "gold");
    let mut seen = Vec::new();
    for i in 0..4 {
        let reply = gold(&format!("198.51.100.{i}")).send(&app).await;
        seen.push(reply.status.as_u16());
        assert_eq!(reply.policy_names(), ["gold"]);
    }
    assert_eq!(seen, [200, 200, 200, 429]);
    // `None`: the client IP, default limits.
    assert_eq!(
        get("/api/x").from("198.51.100.7").send(&app).await.status,
        200
    );
    assert_eq!(
        get("/api/x").from("198.51.100.7").send(&app).await.status,
        429
    );
    assert_eq!(
        remaining(&server, &ip_key("api", "198.51.100.7", "basic")),
        Some(0)
    );
}

#[tokio::test]
async fn a_rule_with_only_tiers_limits_only_those_tiers() {
    let Some(server) = crate::support::server() else {
        return;
    };
    // As documented: callers without a tier, or of a tier the rule does not list, are
    // not limited by a rule that has only tiers.
    let app = app_for(
        &server,
        r#"
        [identity.jwt]
        secret = "middleware-test-secret-0123456789"

        [[rules]]
        name = "api"
        path = "/api/**"
        key = "user"
        tiers.free.limits = [{ name = "free", algorithm = "token_bucket", capacity = 1, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    let free = user("heidi", Some("free"));
    assert_eq!(statuses(&app, 2, &free, "198.51.100.1").await, [200, 429]);
    for _ in 0..3 {
        let anonymous = get("/api/x").from("198.51.100.1").send(&app).await;
        assert_eq!(anonymous.status, StatusCode::OK);
        assert!(!anonymous.has_rate_limit_headers(), "{anonymous:?}");
    }
    let pro = user("ivan", Some("pro"));
    assert_eq!(
        statuses(&app, 3, &pro, "198.51.100.1").await,
        [200, 200, 200]
    );
}

/// Runs `openssl` with `args` in `dir`; false if it is not installed or fails.
fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn public_key_tokens_are_verified_and_algorithm_confusion_fails() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("redlimit-middleware-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ],
    ) && openssl(
        &dir,
        &["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub"],
    ) && openssl(
        &dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.pem",
        ],
    ) && openssl(
        &dir,
        &["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub"],
    );
    if !made {
        eprintln!("skipped: openssl cannot make keys here");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let claims = json!({ "sub": "judy", "tier": "pro", "exp": now_s() + 600 });
    let cases = [
        (
            "RS256",
            "rsa.pub",
            jsonwebtoken::Algorithm::RS256,
            jsonwebtoken::EncodingKey::from_rsa_pem(&read("rsa.pem")).unwrap(),
        ),
        (
            "ES256",
            "ec.pub",
            jsonwebtoken::Algorithm::ES256,
            jsonwebtoken::EncodingKey::from_ec_pem(&read("ec.pem")).unwrap(),
        ),
    ];
    for (i, (name, public, algorithm, private)) in cases.into_iter().enumerate() {
        let text = BY_USER
            .replace(
                "secret = \"middleware-test-secret-0123456789\"",
                &format!(
                    "algorithm = \"{name}\"\npublic_key_file = \"{}\"",
                    dir.join(public).display()
                ),
            )
            .replace("name = \"api\"", &format!("name = \"api{i}\""));
        let app = app_for(&server, &text);
        let signed =
            jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, &private).unwrap();
        let reply = get("/api/x").bearer(&signed).send(&app).await;
        assert_eq!(reply.policy_names(), ["pro"], "{name}: {reply:?}");
        // The classic confusion: HS256 with the public key as the HMAC secret.
        let confused = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&read(public)),
        )
        .unwrap();
        let reply = get("/api/x")
            .from("203.0.113.90")
            .bearer(&confused)
            .send(&app)
            .await;
        assert_eq!(
            reply.policy_names(),
            ["anon"],
            "{name} confusion: {reply:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn builder_methods_after_a_clone_keep_the_shared_metrics_and_settings() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let base = layer(
        &server,
        r#"
        [[rules]]
        name = "api"
        path = "/api/**"
        key = "custom"
        limits = [{ name = "basic", algorithm = "token_bucket", capacity = 1, refill_tokens = 1, refill_ms = 3600000 }]
        "#,
    );
    let metrics = base.metrics();
    let reloader = base.reloader();
    let _elsewhere = base.clone();
    // Configured after a clone: the builder copies the layer, sharing what must be.
    let app = app(base.identify(ByTenant));
    assert_eq!(
        get("/api/x")
            .header("x-tenant", "acme")
            .send(&app)
            .await
            .status,
        200
    );
    assert_eq!(
        get("/api/x")
            .from("198.51.100.9")
            .header("x-tenant", "acme")
            .send(&app)
            .await
            .status,
        429,
        "the Identify applies"
    );
    assert_eq!(crate::support::counter(&metrics, "allowed", "api"), 1);
    assert_eq!(crate::support::counter(&metrics, "denied", "api"), 1);
    reloader.replace(
        redlimit::http::Config::from_toml("headers = \"legacy\"\n[[rules]]\nname = \"api\"\npath = \"/api/**\"\nkey = \"custom\"\nlimits = [{ name = \"basic\", algorithm = \"token_bucket\", capacity = 5, refill_tokens = 1, refill_ms = 3600000 }]")
            .unwrap()
            .compile()
            .unwrap(),
    );
    let reply = get("/api/x").header("x-tenant", "acme").send(&app).await;
    assert_eq!(reply.must("x-ratelimit-remaining"), "3", "{reply:?}");
}
