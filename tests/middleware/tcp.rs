//! Over real TCP: the app served by `axum::serve` on 127.0.0.1 with connect info, asked
//! with raw HTTP/1.1; served without connect info, it refuses limited routes loudly; two
//! instances of the app (two processes, as far as the limits know) share their limits.

use crate::support::{app_for, capture_logs};
use axum::Router;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RULES: &str = r#"
    [[rules]]
    name = "hello"
    path = "/api/hello"
    methods = ["GET"]
    limits = [{ name = "burst", algorithm = "token_bucket", capacity = 3, refill_tokens = 1, refill_ms = 3600000 }]
"#;

/// Serves `app` on a free port of 127.0.0.1, with connect info or without.
async fn serve(app: Router, connect_info: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if connect_info {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        } else {
            axum::serve(listener, app).await.unwrap();
        }
    });
    address
}

/// A response read off the wire.
#[derive(Debug)]
struct Wire {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// `GET path` over a new connection, raw HTTP/1.1.
async fn fetch(address: SocketAddr, path: &str) -> Wire {
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(address),
    )
    .await
    .unwrap()
    .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    Wire {
        status,
        headers,
        body: body.to_owned(),
    }
}

#[tokio::test]
async fn over_tcp_the_peer_address_is_the_key() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let address = serve(app_for(&server, RULES), true).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = fetch(address, "/api/hello").await;
        assert!(reply.headers.contains_key("ratelimit"), "{reply:?}");
        statuses.push(reply.status);
        if reply.status == 429 {
            assert_eq!(
                reply.headers["content-type"], "application/problem+json",
                "{reply:?}"
            );
            assert!(reply.headers.contains_key("retry-after"), "{reply:?}");
            assert!(reply.body.contains("quota-exceeded"), "{reply:?}");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    assert_eq!(
        crate::support::remaining(
            &server,
            &crate::support::ip_key("hello", "127.0.0.1", "burst")
        ),
        Some(0)
    );
    let health = fetch(address, "/health").await;
    assert_eq!(health.status, 200);
    assert!(!health.headers.contains_key("ratelimit"));
}

#[tokio::test]
async fn served_without_connect_info_limited_routes_fail_loudly() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let (logs, _guard) = capture_logs();
    let address = serve(app_for(&server, RULES), false).await;
    for _ in 0..2 {
        let reply = fetch(address, "/api/hello").await;
        assert_eq!(reply.status, 500, "{reply:?}");
    }
    assert_eq!(fetch(address, "/health").await.status, 200);
    assert_eq!(fetch(address, "/api/other").await.status, 200);
    // One error, saying what to do (the server's tasks run on this test's thread).
    let errors = logs.lines_with("ERROR");
    assert_eq!(errors.len(), 1, "{}", logs.text());
    assert!(errors[0].contains("into_make_service_with_connect_info"));
}

#[tokio::test]
async fn two_instances_of_the_app_share_their_limits() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let first = serve(app_for(&server, RULES), true).await;
    let second = serve(app_for(&server, RULES), true).await;
    let mut statuses = Vec::new();
    for address in [first, second, first, second] {
        statuses.push(fetch(address, "/api/hello").await.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}
