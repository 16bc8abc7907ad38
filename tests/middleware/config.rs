//! The configuration: a TOML file with `REDLIMIT__*` environment overrides, checked at
//! start with errors naming the bad field.
//!
//! Environment variables belong to the whole process: every test that sets them is in
//! this one function, with names and values no other test uses (nextest runs each test
//! in its own process anyway).

use crate::support::{app, get, keys, limiter, token};
use redlimit::RateLimiter;
use redlimit::http::{Config, ConfigError, RateLimitLayer};
use std::path::PathBuf;

/// A file in the temporary directory, removed when dropped.
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "redlimit-middleware-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Environment variables set for a while, removed when dropped (also on panic).
struct Env(Vec<&'static str>);

impl Env {
    fn set(&mut self, name: &'static str, value: &str) {
        // SAFETY: these tests set variables on the test's own thread before any
        // runtime thread reads them; nextest runs each test in its own process.
        unsafe { std::env::set_var(name, value) };
        self.0.push(name);
    }

    fn remove(&mut self, name: &'static str) {
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(name) };
        self.0.retain(|n| *n != name);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for name in self.0.drain(..) {
            // SAFETY: as in `set`.
            unsafe { std::env::remove_var(name) };
        }
    }
}

const SECRET_VAR: &str = "REDLIMIT_MIDDLEWARE_TEST_SECRET_7F3A";

const FILE: &str = r#"
key_prefix = "from-the-file"
headers = "draft11"

[identity]
trusted_proxies = []
[identity.jwt]
secret_env = "REDLIMIT_MIDDLEWARE_TEST_SECRET_7F3A"

[[rules]]
name = "api"
path = "/api/**"
key = "user"
limits = [{ name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 3600000 }]
"#;

#[tokio::test]
async fn a_toml_file_with_environment_overrides() {
    let _environment = crate::support::ENVIRONMENT.lock().await;
    let Some(server) = crate::support::server() else {
        return;
    };
    let file = TempFile::new("env", FILE);
    let mut env = Env(Vec::new());
    let secret = "a-secret-from-the-environment-7f3a";
    env.set(SECRET_VAR, secret);
    // Rules and limits by name: reordering the file moves no override.
    env.set("REDLIMIT__RULES__api__LIMITS__burst__CAPACITY", "4");
    env.set("REDLIMIT__HEADERS", "legacy");
    // Lists with commas.
    env.set(
        "REDLIMIT__IDENTITY__TRUSTED_PROXIES",
        "10.77.0.0/16, 10.78.0.0/16",
    );
    // Text fields stay text, even when they read as numbers.
    env.set("REDLIMIT__KEY_PREFIX", "20261123");
    let config = Config::load(&file.0).unwrap();
    let layer = RateLimitLayer::from_config(limiter(&server), &config).unwrap();
    let app = app(layer);

    let erin = token(
        secret,
        &serde_json::json!({ "sub": "erin", "exp": crate::support::now_s() + 600 }),
    );
    let mut seen = Vec::new();
    for i in 0..5 {
        let reply = get("/api/x")
            .from("10.77.0.1")
            .header("x-forwarded-for", &format!("198.51.100.{i}"))
            .bearer(&erin)
            .send(&app)
            .await;
        assert_eq!(reply.header("ratelimit"), None, "legacy only: {reply:?}");
        seen.push((
            reply.status.as_u16(),
            reply.must("x-ratelimit-limit").to_owned(),
        ));
    }
    let four = "4".to_owned();
    assert_eq!(
        seen,
        [
            (200, four.clone()),
            (200, four.clone()),
            (200, four.clone()),
            (200, four.clone()),
            (429, four)
        ],
        "one user (the token verified with the secret from the environment), capacity 4"
    );
    // Behind the proxy from the environment, an anonymous client counts by its address.
    get("/api/x")
        .from("10.77.0.1")
        .header("x-forwarded-for", "198.51.100.200")
        .send(&app)
        .await;
    let keys = keys(&server);
    assert!(
        keys.contains(&"20261123:{api:ip:198.51.100.200}:burst".to_owned()),
        "{keys:?}"
    );
    assert!(keys.iter().all(|k| k.starts_with("20261123:")), "{keys:?}");

    // Bad overrides are named: by the field they reach, or by the variable itself.
    let load_error = |env: &mut Env, name: &'static str, value: &str| -> ConfigError {
        env.set(name, value);
        let error = Config::load(&file.0).unwrap_err();
        env.remove(name);
        println!("{name}={value}: {error}");
        error
    };
    assert_eq!(
        load_error(&mut env, "REDLIMIT__SHADOW", "maybe").field,
        "shadow"
    );
    // Two variables for one field: which would win is no accident.
    let twice = load_error(
        &mut env,
        "REDLIMIT__RULES__API__LIMITS__BURST__CAPACITY",
        "5",
    );
    assert_eq!(twice.field, "REDLIMIT__RULES__api__LIMITS__burst__CAPACITY");
    assert!(
        twice.message.contains("rules[0].limits[0].capacity"),
        "{twice}"
    );
    env.remove("REDLIMIT__RULES__api__LIMITS__burst__CAPACITY");
    let capacity = load_error(
        &mut env,
        "REDLIMIT__RULES__API__LIMITS__BURST__CAPACITY",
        "ten",
    );
    assert_eq!(capacity.field, "rules[0].limits[0].capacity");
    // Displayed as `file: field: message`.
    assert_eq!(
        capacity.to_string(),
        format!(
            "{}: rules[0].limits[0].capacity: {}",
            file.0.display(),
            capacity.message
        )
    );
    // Checked in `load`, not later: a value the layer would refuse.
    assert_eq!(
        load_error(
            &mut env,
            "REDLIMIT__RULES__api__LIMITS__burst__CAPACITY",
            "0"
        )
        .field,
        "rules[0].limits[0].capacity"
    );
    // Positions are no names: the message lists the rules' names.
    let by_position = load_error(&mut env, "REDLIMIT__RULES__0__FAILURE", "closed");
    assert_eq!(by_position.field, "REDLIMIT__RULES__0__FAILURE");
    assert!(
        by_position.message.contains("(named: api)"),
        "{by_position}"
    );
    // Checked at start: a secret variable that is not set.
    env.remove(SECRET_VAR);
    let error = Config::load(&file.0).unwrap_err();
    assert_eq!(error.field, "identity.jwt.secret_env");
    assert!(error.message.contains(SECRET_VAR), "{error}");
    // The documented secret override replaces the file's `secret_env`.
    env.set("REDLIMIT__IDENTITY__JWT__SECRET", secret);
    let config = Config::load(&file.0).unwrap();
    assert_eq!(config.identity.jwt.as_ref().unwrap().secret_env, None);
    let app = crate::support::app(RateLimitLayer::from_config(limiter(&server), &config).unwrap());
    let reply = get("/api/x")
        .from("10.77.0.1")
        .header("x-forwarded-for", "198.51.100.9")
        .bearer(&erin)
        .send(&app)
        .await;
    assert_eq!(reply.status, 200);
    // Counted as erin (verified with the overriding secret), not by address.
    let keys = crate::support::keys(&server);
    assert!(
        !keys.contains(&"20261123:{api:ip:198.51.100.9}:burst".to_owned()),
        "{keys:?}"
    );
}

const VALID: &str = r#"
[identity]
trusted_proxies = ["10.0.0.0/8"]

[exempt]
ips = ["192.0.2.0/24"]

[[rules]]
name = "hello"
path = "/api/hello"
methods = ["GET"]
limits = [{ name = "burst", algorithm = "token_bucket", capacity = 10, refill_tokens = 1, refill_ms = 1000 }]

[[rules]]
name = "login"
path = "/api/login"
methods = ["POST"]
limits = [{ name = "per-minute", algorithm = "sliding", limit = 5, window_ms = 60000 }]
"#;

/// The error of starting a layer with `text`.
fn start_error(text: &str) -> ConfigError {
    match Config::from_toml(text)
        .and_then(|config| RateLimitLayer::from_config(RateLimiter::memory(), &config))
    {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error,
    }
}

#[test]
fn a_bad_configuration_is_refused_at_start_naming_the_field() {
    RateLimitLayer::from_config(RateLimiter::memory(), &Config::from_toml(VALID).unwrap()).unwrap();
    let jwt = "[identity]\ntrusted_proxies = [\"10.0.0.0/8\"]";
    let cases: Vec<(&str, String)> = vec![
        ("rules[0].limits[0].capacity", VALID.replace("capacity = 10", "capacity = 0")),
        ("rules[0].limits[0].capacity", VALID.replace("capacity = 10", "capacity = \"ten\"")),
        ("rules[0].limits[0].refill_ms", VALID.replace(", refill_ms = 1000", "")),
        ("rules[1].limits[0].window_ms", VALID.replace("window_ms = 60000", "window_ms = 0")),
        (
            "rules[1].limits[0].capacity",
            VALID.replace("window_ms = 60000", "window_ms = 60000, capacity = 3"),
        ),
        ("rules[1].limits[0].algorithm", VALID.replace("\"sliding\"", "\"leaky\"")),
        ("rules[1].path", VALID.replace("\"/api/login\"", "\"api/login\"")),
        ("rules[1].path", VALID.replace("path = \"/api/login\"\n", "")),
        ("rules[1].path", VALID.replace("\"/api/login\"", "\"/api/**/login\"")),
        ("rules[1].name", VALID.replace("name = \"login\"", "name = \"hello\"")),
        ("rules[1].name", VALID.replace("name = \"login\"", "name = \"\"")),
        ("rules[1].methods[0]", VALID.replace("\"POST\"", "\"PO ST\"")),
        ("rules[0].key", VALID.replace("methods = [\"GET\"]", "methods = [\"GET\"]\nkey = \"session\"")),
        ("rules[0].key", VALID.replace("methods = [\"GET\"]", "methods = [\"GET\"]\nkey = \"user\"")),
        ("default.key", format!("{VALID}\n[default]\nname = \"rest\"\nkey = \"user\"\nlimits = [{{ algorithm = \"fixed\", limit = 9, window_ms = 1000 }}]\n")),
        ("rules[0].tiers", VALID.replace("refill_ms = 1000 }]\n", "refill_ms = 1000 }]\ntiers.pro.limits = [{ name = \"burst\", algorithm = \"token_bucket\", capacity = 100, refill_tokens = 10, refill_ms = 1000 }]\n")),
        ("identity.client_ip_header", VALID.replace("trusted_proxies = [\"10.0.0.0/8\"]", "client_ip_header = \"CF-Connecting-IP\"")),
        ("identity.forwarded_header", VALID.replace("trusted_proxies = [\"10.0.0.0/8\"]", "trusted_proxies = []\nforwarded_header = \"forwarded\"")),
        ("exempt.users", VALID.replace("ips = [", "users = [\"ops\"]\nips = [")),
        // An empty user id names nobody (a token's empty `sub` is no user).
        ("exempt.users[1]", VALID.replace("ips = [", "users = [\"ops\", \" \"]\nips = [").replace(jwt, &format!("{jwt}\n[identity.jwt]\nsecret = \"config-test-secret-0123456789\""))),
        ("rules[0].cost", VALID.replace("methods = [\"GET\"]", "methods = [\"GET\"]\ncost = -1")),
        ("rules[0].limits", VALID.replace(
            "limits = [{ name = \"burst\", algorithm = \"token_bucket\", capacity = 10, refill_tokens = 1, refill_ms = 1000 }]",
            "limits = []",
        )),
        ("rules[0].limits[1].name", VALID.replace(
            "refill_ms = 1000 }]",
            "refill_ms = 1000 }, { name = \"burst\", algorithm = \"fixed\", limit = 5, window_ms = 1000 }]",
        )),
        ("rules[0].limits[1].algorithm", VALID.replace(
            "refill_ms = 1000 }]",
            "refill_ms = 1000 }, { name = \"cell\", algorithm = \"throttle\", max_burst = 1, count_per_period = 1, period_s = 1 }]",
        )),
        ("identity.trusted_proxies[0]", VALID.replace("10.0.0.0/8", "10.0.0.0/33")),
        ("identity.forwarded_header", VALID.replace(jwt, &format!("{jwt}\nforwarded_header = \"X-Real-IP\""))),
        ("identity.ipv6_prefix", VALID.replace(jwt, &format!("{jwt}\nipv6_prefix = 129"))),
        ("identity.client_ip_header", VALID.replace(jwt, &format!("{jwt}\nclient_ip_header = \"CF Connecting IP\""))),
        ("identity.jwt.secret", VALID.replace(jwt, &format!("{jwt}\njwt = {{ secret = \"short\" }}"))),
        ("identity.jwt.secret", VALID.replace(jwt, &format!("{jwt}\njwt = {{ }}"))),
        ("identity.jwt.algorithm", VALID.replace(jwt, &format!("{jwt}\njwt = {{ algorithm = \"HS999\", secret = \"0123456789abcdef0123\" }}"))),
        ("identity.jwt.public_key_file", VALID.replace(jwt, &format!("{jwt}\njwt = {{ algorithm = \"RS256\" }}"))),
        ("exempt.ips[0]", VALID.replace("192.0.2.0/24", "192.0.2.300")),
        ("exempt.paths[0]", VALID.replace("ips = [", "paths = [\"health\"]\nips = [")),
        ("headers", format!("headers = \"fancy\"\n{VALID}")),
        ("failure", format!("failure = \"sometimes\"\n{VALID}")),
        ("key_prefix", format!("key_prefix = \"\"\n{VALID}")),
        ("default.limits", format!("{VALID}\n[default]\nname = \"rest\"\n")),
        (
            "default.name",
            format!("{VALID}\n[default]\nname = \"login\"\nlimits = [{{ algorithm = \"fixed\", limit = 9, window_ms = 1000 }}]\n"),
        ),
        // Rates: the text, an algorithm that takes no burst, numbers next to a rate,
        // and several rates in one table.
        ("rules[1].limits[0].rate", VALID.replace("algorithm = \"sliding\", limit = 5, window_ms = 60000", "rate = \"5 per fortnight\"")),
        ("rules[1].limits[0].rate", VALID.replace("limit = 5, window_ms = 60000", "rate = \"5/minute burst 9\"")),
        ("rules[1].limits[0].limit", VALID.replace("window_ms = 60000", "rate = \"5/minute\"")),
        ("rules[1].limits[0].rate", VALID.replace("algorithm = \"sliding\", limit = 5, window_ms = 60000", "rate = \"5/minute; 9/hour\"")),
        ("rules[1].limits[0].algorithm", VALID.replace("name = \"per-minute\", algorithm = \"sliding\", limit = 5, window_ms = 60000", "")),
        ("rules[1].limits", VALID.replace("limits = [{ name = \"per-minute\", algorithm = \"sliding\", limit = 5, window_ms = 60000 }]", "limits = 5")),
        (
            "default.limits[0].limit",
            format!("{VALID}\n[default]\nname = \"rest\"\nlimits = [{{ algorithm = \"fixed\", window_ms = 1000 }}]\n"),
        ),
    ];
    for (field, text) in cases {
        assert_ne!(text, VALID, "{field}: the mutation did not apply");
        let error = start_error(&text);
        println!("{error}");
        assert_eq!(error.field, field, "{error}\n{text}");
        assert!(!error.message.is_empty());
        assert_eq!(
            error.to_string(),
            format!("{}: {}", error.field, error.message)
        );
    }
    // One limit name, one algorithm within a rule: tiers of one caller key (the IP for
    // anonymous and signed-in callers alike) would share a key of two algorithms.
    let tiers = VALID.replace(
        "refill_ms = 1000 }]\n",
        "refill_ms = 1000 }]\ntiers.pro.limits = [{ name = \"burst\", algorithm = \"sliding\", limit = 50, window_ms = 1000 }]\n",
    );
    assert_ne!(tiers, VALID);
    let error = start_error(&tiers);
    assert_eq!(
        error.field, "rules[0].tiers.pro.limits[0].algorithm",
        "{error}"
    );
    // The same name with the same algorithm (other numbers) is how tiers are written
    // (here the tiers come from an `Identify`).
    let same = VALID.replace("methods = [\"GET\"]", "methods = [\"GET\"]\nkey = \"custom\"").replace(
        "refill_ms = 1000 }]\n",
        "refill_ms = 1000 }]\ntiers.pro.limits = [{ name = \"burst\", algorithm = \"token_bucket\", capacity = 100, refill_tokens = 10, refill_ms = 1000 }]\n",
    );
    Config::from_toml(&same).unwrap().compile().unwrap();

    // A misspelt field is named in the message.
    let typo = start_error(&format!("shadw = true\n{VALID}"));
    assert!(typo.message.contains("shadw"), "{typo}");
    // Several bad fields: the first, in the order of the file.
    let two = VALID
        .replace("capacity = 10", "capacity = 0")
        .replace("window_ms = 60000", "window_ms = 0");
    assert_eq!(start_error(&two).field, "rules[0].limits[0].capacity");
    // A file that is not there, or not TOML.
    let missing = std::env::temp_dir().join("redlimit-middleware-no-such-file.toml");
    let error = Config::load(&missing).unwrap_err();
    assert_eq!(error.field, missing.display().to_string());
    let broken = TempFile::new("broken", "[[rules]\nname = ");
    let error = Config::load(&broken.0).unwrap_err();
    assert!(error.message.contains("line 1"), "{error}");
}

#[tokio::test]
async fn rate_strings_stand_for_the_documented_numbers() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let app = crate::support::app_for(
        &server,
        r#"
        [[rules]]
        name = "login"
        path = "/login"
        limits = "5 per minute; 100/hour"

        [[rules]]
        name = "burst"
        path = "/burst"
        limits = ["2/second burst 3"]

        [[rules]]
        name = "cell"
        path = "/cell"
        limits = [{ name = "gcra", algorithm = "throttle", rate = "1/minute burst 2" }]
        "#,
    );
    // Two sliding windows, named by their rates.
    let mut login = Vec::new();
    for _ in 0..6 {
        login.push(get("/login").send(&app).await);
    }
    assert_eq!(
        login[0].must("ratelimit-policy"),
        r#""5/minute";q=5;w=60, "100/hour";q=100;w=3600"#
    );
    let statuses: Vec<u16> = login.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    let body: serde_json::Value = serde_json::from_str(&login[5].body).unwrap();
    assert_eq!(body["violated-policies"], serde_json::json!(["5/minute"]));
    // `burst`: a token bucket of 3 refilled 2 per second (w = 3 / 2 s, rounded up).
    let burst = get("/burst").send(&app).await;
    assert_eq!(burst.must("ratelimit-policy"), r#""2/second";q=3;w=2"#);
    // throttle: bursts of 2, one per minute after.
    let mut cell = Vec::new();
    for _ in 0..3 {
        cell.push(get("/cell").send(&app).await.status.as_u16());
    }
    assert_eq!(cell, [200, 200, 429]);
    let keys = keys(&server);
    assert!(
        keys.contains(&"rl:{login:ip:192.0.2.1}:5/minute".to_owned()),
        "{keys:?}"
    );
}

#[tokio::test]
async fn the_example_configuration_limits_as_the_issue_says() {
    let _environment = crate::support::ENVIRONMENT.lock().await;
    let Some(server) = crate::support::server() else {
        return;
    };
    let path = redlimit_test_support::repo_root().join("examples/axum_api.toml");
    let config = Config::load(&path).unwrap();
    let app = app(RateLimitLayer::from_config(limiter(&server), &config).unwrap());
    // GET /api/hello: per client IP, a bucket of 10 refilling 1 per second: 10 at once,
    // then one more per second this machine took.
    let started = std::time::Instant::now();
    let mut hello = Vec::new();
    while hello.len() < 30 {
        let reply = get("/api/hello").send(&app).await;
        let refused = reply.status == 429;
        hello.push(reply);
        if refused {
            break;
        }
    }
    let elapsed = started.elapsed();
    let served = hello.len() - 1;
    println!("{served} served in {elapsed:?} before the first 429");
    assert!(
        (10..=10 + elapsed.as_secs() as usize + 1).contains(&served),
        "{served} in {elapsed:?}"
    );
    let refused = hello.last().unwrap();
    assert_eq!(refused.status, 429);
    assert_eq!(
        hello[0].must("ratelimit-policy"),
        r#""burst";q=10;w=10, "per-user";q=1000;w=3600"#
    );
    assert_eq!(refused.must("retry-after"), "1");
    assert_eq!(
        get("/api/hello").from("192.0.2.2").send(&app).await.status,
        200
    );
    // Only GET.
    assert!(
        !crate::support::post("/api/hello")
            .send(&app)
            .await
            .has_rate_limit_headers()
    );
    // POST /api/login: per IP, 5 per minute (sliding).
    let mut login = Vec::new();
    for _ in 0..6 {
        login.push(crate::support::post("/api/login").send(&app).await);
    }
    assert!(login[..5].iter().all(|r| r.status == 200), "{login:?}");
    assert_eq!(login[5].status, 429);
    assert_eq!(
        login[0].must("ratelimit-policy"),
        r#""per-minute";q=5;w=60"#
    );
    // /health and /metrics exempt; no trusted proxies: X-Forwarded-For is ignored.
    for path in ["/health", "/metrics"] {
        assert!(!get(path).send(&app).await.has_rate_limit_headers());
    }
    let spoofed = get("/api/hello")
        .header("x-forwarded-for", "198.51.100.1")
        .send(&app)
        .await;
    assert_eq!(spoofed.status, 429);
}
