//! Hot reload: `Reloader::replace`, `reload(path)`, `watch(path, poll)` on a file change
//! and on SIGHUP; counters survive (they live in Redis under the rule and limit names),
//! and requests in flight during repeated reloads are all answered.

use crate::config::TempFile;
use crate::support::{Reply, app, get, ip_key, layer, limiter, remaining};
use axum::http::StatusCode;
use redlimit::http::{Config, RateLimitLayer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// One rule, a bucket of `capacity` (an hour per token), headers `style`, and maybe a
/// second rule on `/new`.
fn config(capacity: u64, style: &str, new_rule: bool) -> String {
    let mut text = format!(
        r#"
        headers = "{style}"

        [[rules]]
        name = "api"
        path = "/api/**"
        limits = [{{ name = "burst", algorithm = "token_bucket", capacity = {capacity}, refill_tokens = 1, refill_ms = 3600000 }}]
        "#
    );
    if new_rule {
        text.push_str(
            r#"
        [[rules]]
        name = "new"
        path = "/new"
        limits = [{ name = "one", algorithm = "fixed", limit = 1, window_ms = 3600000 }]
        "#,
        );
    }
    text
}

fn settings(text: &str) -> redlimit::http::Settings {
    Config::from_toml(text).unwrap().compile().unwrap()
}

/// Which header style a reply shows.
fn style(reply: &Reply) -> &'static str {
    match (
        reply.header("ratelimit").is_some(),
        reply.header("x-ratelimit-limit").is_some(),
    ) {
        (true, true) => "both",
        (true, false) => "draft11",
        (false, true) => "legacy",
        (false, false) => "none",
    }
}

#[tokio::test]
async fn replacing_the_settings_keeps_the_counters() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, &config(3, "draft11", false));
    let reloader = layer.reloader();
    let app = app(layer);
    for _ in 0..2 {
        assert_eq!(get("/api/x").send(&app).await.status, StatusCode::OK);
    }
    assert_eq!(get("/new").send(&app).await.header("ratelimit"), None);

    reloader.replace(settings(&config(3, "legacy", true)));
    let third = get("/api/x").send(&app).await;
    assert_eq!(style(&third), "legacy");
    assert_eq!(
        third.must("x-ratelimit-remaining"),
        "0",
        "the 2 spent stayed spent"
    );
    assert_eq!(get("/api/x").send(&app).await.status, 429);
    let new = get("/new").send(&app).await;
    assert_eq!((new.status.as_u16(), style(&new)), (200, "legacy"));

    // A larger capacity applies to the usage already recorded: 3 spent of 5.
    reloader.replace(settings(&config(5, "legacy", true)));
    let more = get("/api/x").send(&app).await;
    assert_eq!(more.status, StatusCode::OK);
    assert_eq!(more.must("x-ratelimit-remaining"), "1");
}

#[tokio::test]
async fn reloading_a_file_keeps_the_counters_and_a_bad_file_changes_nothing() {
    let _environment = crate::support::ENVIRONMENT.lock().await;
    let Some(server) = crate::support::server() else {
        return;
    };
    let file = TempFile::new("reload", &config(3, "draft11", false));
    let layer =
        RateLimitLayer::from_config(limiter(&server), &Config::load(&file.0).unwrap()).unwrap();
    let reloader = layer.reloader();
    let app = app(layer);
    for _ in 0..2 {
        get("/api/x").send(&app).await;
    }
    std::fs::write(&file.0, config(3, "legacy", false)).unwrap();
    reloader.reload(&file.0).unwrap();
    let third = get("/api/x").send(&app).await;
    assert_eq!(
        (style(&third), third.must("x-ratelimit-remaining")),
        ("legacy", "0")
    );

    std::fs::write(
        &file.0,
        config(3, "both", false).replace("capacity = 3", "capacity = 0"),
    )
    .unwrap();
    let error = reloader.reload(&file.0).unwrap_err();
    assert_eq!(error.field, "rules[0].limits[0].capacity");
    let after = get("/api/x").send(&app).await;
    assert_eq!((after.status.as_u16(), style(&after)), (429, "legacy"));
}

/// Sends requests until one shows header style `wanted` (at most `within`).
async fn until_style(app: &axum::Router, wanted: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let reply = get("/api/x").from("198.51.100.1").send(app).await;
        if style(&reply) == wanted {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {} after {within:?}, wanted {wanted}",
            style(&reply)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn watching_a_file_applies_each_change() {
    let _environment = crate::support::ENVIRONMENT.lock().await;
    let Some(server) = crate::support::server() else {
        return;
    };
    let file = TempFile::new("watch", &config(100, "draft11", false));
    let layer =
        RateLimitLayer::from_config(limiter(&server), &Config::load(&file.0).unwrap()).unwrap();
    let watcher = layer
        .reloader()
        .watch(file.0.clone(), Duration::from_millis(50));
    let app = app(layer);
    // Changed at once, before the watching task ever ran.
    std::fs::write(&file.0, config(100, "legacy", false)).unwrap();
    let took = until_style(&app, "legacy", Duration::from_secs(10)).await;
    println!("first change applied after {took:?}");

    // A change that keeps the modification time (`cp -p`, `rsync -t`, a coarse clock).
    let modified = std::fs::metadata(&file.0).unwrap().modified().unwrap();
    std::fs::write(&file.0, config(100, "both", false)).unwrap();
    set_modified(&file.0, modified);
    let took = until_style(&app, "both", Duration::from_secs(10)).await;
    println!("same-mtime change applied after {took:?}");

    // Replaced by a rename, as editors and deploy tools do.
    let staged = file.0.with_extension("staged");
    std::fs::write(&staged, config(100, "legacy", false)).unwrap();
    std::fs::rename(&staged, &file.0).unwrap();
    let took = until_style(&app, "legacy", Duration::from_secs(10)).await;
    println!("renamed file applied after {took:?}");
    std::fs::write(&file.0, config(100, "both", false)).unwrap();
    until_style(&app, "both", Duration::from_secs(10)).await;

    // A broken file is refused (logged) and the settings stay; fixing it applies.
    std::fs::write(&file.0, "headers = \"draft11\"\n[[rules]\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(style(&get("/api/x").send(&app).await), "both");
    std::fs::write(&file.0, config(100, "draft11", false)).unwrap();
    until_style(&app, "draft11", Duration::from_secs(10)).await;
    // Counters survived every reload: one bucket, every request counted once.
    let left = remaining(&server, &ip_key("api", "198.51.100.1", "burst")).unwrap();
    assert!(left < 100, "{left}");
    watcher.abort();
}

fn set_modified(path: &std::path::Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

#[tokio::test]
async fn sighup_reloads_at_once() {
    let _environment = crate::support::ENVIRONMENT.lock().await;
    let Some(server) = crate::support::server() else {
        return;
    };
    let file = TempFile::new("sighup", &config(100, "draft11", false));
    let layer =
        RateLimitLayer::from_config(limiter(&server), &Config::load(&file.0).unwrap()).unwrap();
    // Polling once an hour: only the signal can make it reload within the test. The
    // handler is installed by `watch` itself, so the signal is safe right after it.
    let watcher = layer
        .reloader()
        .watch(file.0.clone(), Duration::from_secs(3600));
    let app = app(layer);
    let modified = std::fs::metadata(&file.0).unwrap().modified().unwrap();
    std::fs::write(&file.0, config(100, "legacy", false)).unwrap();
    set_modified(&file.0, modified);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let took = until_style(&app, "legacy", Duration::from_secs(10)).await;
    println!("SIGHUP applied after {took:?}");
    // Once more: every signal reloads.
    std::fs::write(&file.0, config(100, "both", false)).unwrap();
    set_modified(&file.0, modified);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    until_style(&app, "both", Duration::from_secs(10)).await;
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_during_repeated_reloads_are_all_answered() {
    let _environment = crate::support::ENVIRONMENT.lock().await;
    let Some(server) = crate::support::server() else {
        return;
    };
    let capacity = 1_000_000;
    let file = TempFile::new("inflight", &config(capacity, "legacy", false));
    let layer = layer(&server, &config(capacity, "draft11", false));
    let reloader = layer.reloader();
    let app = app(layer);
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (app, stop) = (app.clone(), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut replies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let reply = get("/api/x").from("198.51.100.1").send(&app).await;
                replies.push((reply.status, style(&reply), worker));
                tokio::task::yield_now().await;
            }
            replies
        }));
    }
    let draft11 = config(capacity, "draft11", false);
    let mut reloads = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        reloader.replace(settings(&draft11));
        tokio::task::yield_now().await;
        reloader.reload(&file.0).unwrap();
        tokio::task::yield_now().await;
        reloads += 2;
    }
    stop.store(true, Ordering::Relaxed);
    let mut replies = Vec::new();
    for worker in workers {
        replies.extend(worker.await.unwrap());
    }
    let count = |s: &str| replies.iter().filter(|r| r.1 == s).count();
    println!(
        "{reloads} reloads, {} requests: {} draft11, {} legacy",
        replies.len(),
        count("draft11"),
        count("legacy")
    );
    assert!(
        replies.iter().all(|r| r.0 == StatusCode::OK),
        "every request answered 200"
    );
    assert_eq!(count("draft11") + count("legacy"), replies.len());
    assert!(
        count("draft11") > 0 && count("legacy") > 0,
        "reloads happened mid-traffic"
    );
    // Every request counted exactly once, whichever settings decided it.
    let left = remaining(&server, &ip_key("api", "198.51.100.1", "burst")).unwrap();
    assert_eq!(capacity as usize - left as usize, replies.len());
}

#[tokio::test]
async fn a_limit_whose_algorithm_changes_starts_afresh_and_keeps_limiting() {
    let Some(server) = crate::support::server() else {
        return;
    };
    let layer = layer(&server, &config(3, "draft11", false));
    let reloader = layer.reloader();
    let app = app(layer);
    for _ in 0..3 {
        get("/api/x").send(&app).await;
    }
    assert_eq!(get("/api/x").send(&app).await.status, 429);
    // Same rule, same limit name, another algorithm: the stored token bucket cannot be
    // read as a window (the server answers WRONGTYPE).
    reloader.replace(settings(&config(3, "draft11", false).replace(
        "algorithm = \"token_bucket\", capacity = 3, refill_tokens = 1, refill_ms = 3600000",
        "algorithm = \"sliding\", limit = 2, window_ms = 3600000",
    )));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let reply = get("/api/x").send(&app).await;
        assert!(reply.header("ratelimit").is_some(), "decided: {reply:?}");
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429], "the new limit applies");
}
