//! The harness against the real servers of this machine (none is loaded with the
//! module). A missing server fails these tests like every live test, unless
//! `REDLIMIT_SKIP_MISSING_SERVERS=1` (then each test says what it skipped).

use std::panic;
use std::thread;

use redis::Commands;
use redlimit_test_support::{ServerBinary, ServerBuilder, available_servers};

fn servers_or_skip(test: &str) -> Vec<ServerBinary> {
    let servers = available_servers();
    if servers.is_empty() {
        eprintln!("{test}: skipped, no server (REDLIMIT_SKIP_MISSING_SERVERS=1)");
    }
    servers
}

fn info(server: &redlimit_test_support::Server, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query(&mut server.connection())
        .unwrap()
}

#[test]
fn each_server_answers_on_its_own_port_with_harness_defaults() {
    for binary in servers_or_skip("each_server_answers") {
        let server = ServerBuilder::new(&binary).start();
        let mut con = server.connection();

        let pong: String = redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG", "{}", binary.name());
        let server_info = info(&server, "server");
        assert!(
            server_info.contains(&format!("tcp_port:{}\r\n", server.port())),
            "{}: {server_info}",
            binary.name()
        );
        assert_eq!(
            server.url(),
            format!("redis://127.0.0.1:{}/", server.port())
        );
        let save: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query(&mut con)
            .unwrap();
        assert_eq!(save, ["save", ""], "{}", binary.name());
        assert!(server.dir().join("server.log").is_file());
        assert!(
            server.log().contains("Ready to accept connections"),
            "{}",
            server.log()
        );
    }
}

#[test]
fn servers_report_the_expected_versions() {
    for binary in servers_or_skip("servers_report_the_expected_versions") {
        let server = ServerBuilder::new(&binary).start();
        let server_info = info(&server, "server");
        let expected = match binary.name() {
            "redis-7.0" => "redis_version:7.0.",
            "redis-8.2" => "redis_version:8.2.",
            // Valkey reports redis_version:7.2.4 for compatibility.
            _ => "valkey_version:9.1.",
        };
        assert!(
            server_info.contains(expected),
            "{}: {server_info}",
            binary.name()
        );
    }
}

#[test]
fn replica_syncs_with_its_primary() {
    for binary in servers_or_skip("replica_syncs_with_its_primary") {
        let primary = ServerBuilder::new(&binary).start();
        let mut con = primary.connection();
        let () = con.set("before", "1").unwrap();

        let replica = ServerBuilder::new(&binary).replica_of(&primary).start();
        replica.wait_for_sync();
        let () = con.set("after", "2").unwrap();
        let acked: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut con).unwrap();
        assert_eq!(acked, 1, "{}", binary.name());

        let mut replica_con = replica.connection();
        let before: String = replica_con.get("before").unwrap();
        let after: String = replica_con.get("after").unwrap();
        assert_eq!(
            (before.as_str(), after.as_str()),
            ("1", "2"),
            "{}",
            binary.name()
        );
    }
}

#[test]
fn restart_from_aof_in_the_same_directory() {
    for binary in servers_or_skip("restart_from_aof_in_the_same_directory") {
        let first = ServerBuilder::new(&binary)
            .args(["--appendonly", "yes"])
            .start();
        let mut con = first.connection();
        let () = con.set("k", "v1").unwrap();
        let () = redis::cmd("BGREWRITEAOF").query(&mut con).unwrap();
        first.wait_for_background_saves();
        let () = con.set("k", "v2").unwrap();
        let dir = first
            .stop()
            .expect("the server owned its temporary directory");

        let second = ServerBuilder::new(&binary)
            .dir(dir.path())
            .args(["--appendonly", "yes"])
            .start();
        let value: String = second.connection().get("k").unwrap();
        assert_eq!(value, "v2", "{}", binary.name());
        // The log file holds both servers' lines; log() only the second's.
        assert_eq!(second.log().matches("Server initialized").count(), 1);
    }
}

#[test]
fn killed_server_keeps_only_what_was_saved() {
    for binary in servers_or_skip("killed_server_keeps_only_what_was_saved") {
        let data = tempfile::tempdir().unwrap();
        let first = ServerBuilder::new(&binary).dir(data.path()).start();
        let mut con = first.connection();
        let () = con.set("saved", "1").unwrap();
        let () = redis::cmd("SAVE").query(&mut con).unwrap();
        let () = con.set("unsaved", "1").unwrap();
        assert!(first.kill().is_none(), "the test owns the directory");

        let second = ServerBuilder::new(&binary).dir(data.path()).start();
        let mut con = second.connection();
        let saved: Option<String> = con.get("saved").unwrap();
        let unsaved: Option<String> = con.get("unsaved").unwrap();
        assert_eq!(
            (saved.as_deref(), unsaved),
            (Some("1"), None),
            "{}",
            binary.name()
        );
    }
}

#[test]
fn many_servers_in_parallel_get_distinct_ports_and_dirs() {
    let Some(binary) = servers_or_skip("many_servers_in_parallel").pop() else {
        return;
    };
    let servers: Vec<_> = (0..12)
        .map(|_| {
            let binary = binary.clone();
            thread::spawn(move || ServerBuilder::new(&binary).start())
        })
        .map(|handle| handle.join().unwrap())
        .collect();
    let mut ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
    for server in &servers {
        let id: u32 = info(server, "server")
            .lines()
            .find_map(|l| l.strip_prefix("tcp_port:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(u32::from(server.port()), id);
    }
}

#[test]
fn a_server_that_cannot_start_panics_with_its_log() {
    for binary in servers_or_skip("a_server_that_cannot_start_panics_with_its_log") {
        let builder = ServerBuilder::new(&binary).args(["--maxmemory-policy", "not-a-policy"]);
        let message = panic::catch_unwind(|| builder.start())
            .map(|_| ())
            .expect_err("start must panic on a bad option");
        let message = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(message.contains("failed to start"), "{message}");
        // The command line and the server's own complaint, from its stderr or log.
        assert!(
            message.contains("--maxmemory-policy not-a-policy"),
            "{message}"
        );
        assert!(message.contains("FATAL CONFIG FILE ERROR"), "{message}");
    }
}
