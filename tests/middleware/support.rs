//! Shared by the middleware tests: a server with the module, layers built from TOML, an
//! axum app driven in-process (`oneshot`, with any peer address), replies to read, the
//! limiter keys in Redis, captured logs, Prometheus text and JWTs.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use redlimit::http::{Config, RateLimitLayer};
use redlimit::{Backend, FailurePolicy, RateLimiter, ServerEngine};
use redlimit_test_support::{
    Server, ServerBinary, ServerBuilder, TestEngine, available_servers, module_path, test_engine,
};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tower::ServiceExt;

/// Held by the test that sets `REDLIMIT__*` variables and by the tests that read the
/// environment through `Config::load`, so that under `cargo test` (one process, many
/// threads) they do not see each other's variables. (nextest runs each test in its own
/// process.)
pub static ENVIRONMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The server binary most tests use: Redis 8.2 if installed, else the first found.
pub fn binary() -> Option<ServerBinary> {
    let found = available_servers();
    let chosen = found
        .iter()
        .find(|b| b.name() == "redis-8.2")
        .or_else(|| found.first())
        .cloned();
    if chosen.is_none() {
        eprintln!("skipped: no server found; run scripts/install-deps.sh");
    }
    chosen
}

/// A server of `binary` with the redlimit module (without it when `REDLIMIT_TEST_ENGINE`
/// asks for the scripts).
pub fn start(binary: &ServerBinary) -> Server {
    if !test_engine().loads_module() {
        return ServerBuilder::new(binary).start();
    }
    ServerBuilder::new(binary).module(module_path()).start()
}

/// `backend` with the engine `REDLIMIT_TEST_ENGINE` names.
pub fn with_engine(backend: Backend) -> Backend {
    backend.with_engine(match test_engine() {
        TestEngine::Module => ServerEngine::Module,
        TestEngine::Scripts => ServerEngine::Scripts,
        TestEngine::Auto => ServerEngine::Auto,
    })
}

/// A server with the module on the preferred binary (`None`: no server installed).
pub fn server() -> Option<Server> {
    binary().map(|binary| start(&binary))
}

/// A limiter on `server` with room for a loaded machine (5 s) that returns errors
/// instead of answering for the server: a backend failure shows as a response without
/// rate-limit headers, which the tests notice.
pub fn limiter(server: &Server) -> RateLimiter {
    RateLimiter::builder(with_engine(Backend::redis(&server.url()).unwrap()))
        .timeout(Duration::from_secs(5))
        .on_failure(FailurePolicy::Error)
        .build()
        .unwrap()
}

/// A layer deciding on `server` under the configuration `toml`.
pub fn layer(server: &Server, toml: &str) -> RateLimitLayer {
    let config = Config::from_toml(toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    RateLimitLayer::from_config(limiter(server), &config).unwrap_or_else(|e| panic!("{e}"))
}

/// The app every test drives: `/metrics` renders the layer's metrics, every other path
/// and method answers 200 `ok`; the layer wraps both.
pub fn app(layer: RateLimitLayer) -> Router {
    let metrics = layer.metrics();
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || async move { metrics.render() }),
        )
        .fallback(|| async { "ok" })
        .layer(layer)
}

/// `app(layer(server, toml))`.
pub fn app_for(server: &Server, toml: &str) -> Router {
    app(layer(server, toml))
}

/// One request to send; the peer defaults to 192.0.2.1 (TEST-NET-1).
#[must_use]
pub struct Call {
    method: Method,
    path: String,
    peer: Option<SocketAddr>,
    headers: Vec<(String, Vec<u8>)>,
}

pub fn get(path: &str) -> Call {
    call(Method::GET, path)
}

pub fn post(path: &str) -> Call {
    call(Method::POST, path)
}

pub fn call(method: Method, path: &str) -> Call {
    Call {
        method,
        path: path.to_owned(),
        peer: Some(SocketAddr::new("192.0.2.1".parse().unwrap(), 40_000)),
        headers: Vec::new(),
    }
}

/// `ip` as a peer socket address (any port).
pub fn peer(ip: &str) -> SocketAddr {
    let ip: IpAddr = ip
        .parse()
        .unwrap_or_else(|e| panic!("{ip} is not an IP: {e}"));
    SocketAddr::new(ip, 40_001)
}

impl Call {
    /// The TCP peer the server saw.
    pub fn from(mut self, ip: &str) -> Self {
        self.peer = Some(peer(ip));
        self
    }

    /// From this peer socket address (port included).
    pub fn peer_addr(mut self, addr: SocketAddr) -> Self {
        self.peer = Some(addr);
        self
    }

    /// As if the app were served without connect info.
    pub fn without_peer(mut self) -> Self {
        self.peer = None;
        self
    }

    pub fn header(self, name: &str, value: &str) -> Self {
        self.header_bytes(name, value.as_bytes())
    }

    /// A header value that need not be text (`obs-text` bytes are legal in HTTP/1.1).
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        self.headers.push((name.to_owned(), value.to_vec()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn request(self) -> Request<Body> {
        let mut builder = Request::builder().method(self.method).uri(&self.path);
        for (name, value) in &self.headers {
            let value = axum::http::HeaderValue::from_bytes(value).unwrap();
            builder = builder.header(name.as_str(), value);
        }
        let mut request = builder.body(Body::empty()).unwrap();
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        request
    }

    /// Sends the request through `app` in-process.
    pub async fn send(self, app: &Router) -> Reply {
        send(app, self.request()).await
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The header `name`, which must be there.
    #[track_caller]
    pub fn must(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header: {self:?}"))
    }

    /// Whether any rate-limit header (draft-11 or legacy) or `Retry-After` is present.
    pub fn has_rate_limit_headers(&self) -> bool {
        [
            "ratelimit",
            "ratelimit-policy",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "retry-after",
        ]
        .iter()
        .any(|name| self.headers.contains_key(*name))
    }

    /// `r` of the policy `name` in the draft-11 `RateLimit` header.
    #[track_caller]
    pub fn remaining(&self, name: &str) -> u64 {
        self.item("ratelimit", name, "r")
    }

    /// `q` of the policy `name` in `RateLimit-Policy`.
    #[track_caller]
    pub fn quota(&self, name: &str) -> u64 {
        self.item("ratelimit-policy", name, "q")
    }

    /// Parameter `param` of the item `"name"` of the structured-field list `header`.
    #[track_caller]
    pub fn item(&self, header: &str, name: &str, param: &str) -> u64 {
        let value = self.must(header);
        let quoted = format!("\"{name}\"");
        let item = value
            .split(", ")
            .find(|item| item.split(';').next() == Some(quoted.as_str()))
            .unwrap_or_else(|| panic!("no {quoted} in {header}: {value}"));
        item.split(';')
            .find_map(|p| p.strip_prefix(&format!("{param}=")))
            .unwrap_or_else(|| panic!("no {param} in {item}"))
            .parse()
            .unwrap()
    }

    /// The names of the policies in `RateLimit-Policy`.
    pub fn policy_names(&self) -> Vec<String> {
        self.header("ratelimit-policy")
            .map(|v| {
                v.split(", ")
                    .map(|item| item.split(';').next().unwrap().trim_matches('"').to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// The Redis key of `limit` of `rule` for the client IP `ip` (IPv4).
pub fn ip_key(rule: &str, ip: &str, limit: &str) -> String {
    format!("rl:{{{rule}:ip:{ip}}}:{limit}")
}

/// What `key` has left now (`RL.STATUS` answers a peek of cost 1: what is left after
/// it when allowed, so one more); `None` for a missing key.
pub fn remaining(server: &Server, key: &str) -> Option<i64> {
    redlimit_test_support::status(&mut server.connection(), key)
        .map(|s| s.number("remaining") + s.number("allowed"))
}

/// Deletes the limiter `key` (the script engine's name for it, under the scripts).
pub fn delete(server: &Server, key: &str) {
    let name = if test_engine().loads_module() {
        key.as_bytes().to_vec()
    } else {
        redlimit::scripts::script_key(key.as_bytes())
    };
    let _: () = redis::cmd("DEL")
        .arg(name)
        .query(&mut server.connection())
        .unwrap();
}

/// Every key on the server, by the limiter names the layer used (the script engine's
/// names read back as those).
pub fn keys(server: &Server) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut server.connection())
        .unwrap();
    if !test_engine().loads_module() {
        keys = keys
            .into_iter()
            .map(|key| {
                let key = key.strip_suffix("|rls").unwrap_or(&key).to_owned();
                match key.strip_prefix('{').and_then(|k| k.strip_suffix('}')) {
                    // `{name}` is how the scripts keep a name without a hash tag.
                    Some(inner)
                        if redlimit::scripts::script_key(inner.as_bytes())
                            == format!("{key}|rls").into_bytes() =>
                    {
                        inner.to_owned()
                    }
                    _ => key,
                }
            })
            .collect();
    }
    keys.sort();
    keys
}

/// The value of the Prometheus sample `name{rule="rule"}` in `text`.
#[track_caller]
pub fn sample(text: &str, name: &str, rule: &str) -> f64 {
    let prefix = format!("{name}{{rule=\"{rule}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}in\n{text}"))
        .parse()
        .unwrap()
}

/// The counter `redlimit_http_<what>_total` of `rule` in the layer's metrics.
pub fn counter(layer_metrics: &redlimit::http::Metrics, what: &str, rule: &str) -> u64 {
    let text = layer_metrics.render();
    let prefix = format!("redlimit_http_{what}_total{{rule=\"{rule}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |v| v.parse().unwrap())
}

/// An HS256 token with `claims`, signed with `secret`.
pub fn token(secret: &str, claims: &serde_json::Value) -> String {
    token_with(jsonwebtoken::Algorithm::HS256, secret, claims)
}

pub fn token_with(
    algorithm: jsonwebtoken::Algorithm,
    secret: &str,
    claims: &serde_json::Value,
) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(algorithm),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Seconds since the epoch.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Log lines written while the guard of [`capture_logs`] lives (on this thread).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// The lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }
}

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures this thread's `tracing` events (INFO and above) until the guard drops.
pub fn capture_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

/// As [`capture_logs`], one JSON object per line.
pub fn capture_json_logs() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::INFO)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}
