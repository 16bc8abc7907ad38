//! A server that is up but cannot serve the decision (`OOM` under `maxmemory`, `BUSY`
//! running a long script) is unavailable: the failure policy answers, and the client
//! is back on the server once the server is.

use crate::fault::{COOL_DOWN, Failing, Fault, builder};
use crate::support::{PROTOCOLS, binaries, command};
use redlimit::{FailurePolicy, Policy, Source};
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_server_out_of_memory_is_unavailable_until_it_has_room() {
    for binary in binaries() {
        let failing = Failing::start(&binary, Fault::Kill);
        let con = &mut failing.server().connection();
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let limiter = builder(&protocol.url(failing.server()), FailurePolicy::Closed)
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let policy = Policy::fixed(10, 3_600_000).unwrap();
            assert!(limiter.check("k", &policy).await.unwrap().allowed);
            let _: () = command(&["CONFIG", "SET", "maxmemory", "1"])
                .query(con)
                .unwrap();
            let full = limiter.check("k", &policy).await.unwrap();
            assert_eq!(
                (full.allowed, full.source),
                (false, Source::FailedClosed),
                "{name}: OOM fails closed"
            );
            let _: () = command(&["CONFIG", "SET", "maxmemory", "0"])
                .query(con)
                .unwrap();
            let back = limiter.check("k", &policy).await.unwrap();
            assert_eq!(
                (back.allowed, back.source),
                (true, Source::Server),
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn a_server_busy_with_a_script_is_unavailable_until_it_is_done() {
    for binary in binaries() {
        let failing = Failing::start(&binary, Fault::Kill);
        let con = &mut failing.server().connection();
        let _: () = command(&["CONFIG", "SET", "busy-reply-threshold", "10"])
            .query(con)
            .unwrap();
        for protocol in PROTOCOLS {
            let name = format!("{} {}", binary.name(), protocol.name());
            let limiter = builder(&protocol.url(failing.server()), FailurePolicy::Error)
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let policy = Policy::fixed(10, 3_600_000).unwrap();
            assert!(limiter.check("k", &policy).await.unwrap().allowed);

            let mut script = failing.server().connection();
            let busy = std::thread::spawn(move || {
                // Runs until SCRIPT KILL.
                command(&["EVAL", "while true do end", "0"])
                    .query::<redis::Value>(&mut script)
                    .unwrap_err()
            });
            // The server answers BUSY once the script has run 10 ms.
            let deadline = Instant::now() + Duration::from_secs(5);
            let error = loop {
                let result = limiter.check("k", &policy).await;
                match result {
                    Err(error) if error.redis_error().and_then(|e| e.code()) == Some("BUSY") => {
                        break error;
                    }
                    other => {
                        assert!(Instant::now() < deadline, "{name}: never busy: {other:?}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            assert!(error.is_unavailable(), "{name}: {error}");
            let mut killer = failing.server().connection();
            let _: () = command(&["SCRIPT", "KILL"]).query(&mut killer).unwrap();
            busy.join().unwrap();
            tokio::time::sleep(COOL_DOWN).await;
            let back = limiter.check("k", &policy).await.unwrap();
            assert_eq!(back.source, Source::Server, "{name}: back after the script");
        }
    }
}
