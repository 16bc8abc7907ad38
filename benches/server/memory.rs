//! Bytes per key: on a fresh server, `FLUSHALL`, `used_memory`, then many keys of one
//! kind written through pipelines, `used_memory` again; the difference divided by the
//! number of keys, and `MEMORY USAGE` of one key.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use redlimit_test_support::{ServerBinary, set_clock_offset};

use crate::scripts::Scripts;
use crate::{Settings, info_field, server_version, start};

/// Commands per pipeline when filling the keyspace.
const FILL_BATCH: usize = 1_000;
/// A 19-digit integer: what redis-cell keeps in a string key (its TAT in ns).
const NINETEEN_DIGITS: &str = "1763927000123456789";

/// Queues call number `call` on key `key`.
type WriteKey = Box<dyn Fn(&mut redis::Pipeline, &str, u64)>;

/// One kind of key and how to write it.
struct KeyKind {
    kind: &'static str,
    /// The command as the table shows it.
    command: &'static str,
    /// The command of call number `call` on key `key`.
    write: WriteKey,
    /// Calls per key, `SPACING_MS` apart on the module's test clock (1: one call).
    calls_per_key: u64,
}

/// Time between two calls on one key when a kind makes several (100 in a minute).
const SPACING_MS: u64 = 600;

/// A kind that sends `argv` (the key after the command name) once per key.
fn simple_kind(
    kind: &'static str,
    command: &'static str,
    argv: &'static [&'static str],
) -> KeyKind {
    KeyKind {
        kind,
        command,
        write: Box::new(move |pipe, key, _| {
            let cmd = pipe.cmd(argv[0]).arg(key);
            for arg in &argv[1..] {
                cmd.arg(*arg);
            }
            cmd.ignore();
        }),
        calls_per_key: 1,
    }
}

/// Policies slow enough that no key expires while the keyspace is being filled and
/// measured (the throughput policies' keys go idle, and vanish, within 2 s).
fn key_kinds(scripts: &Scripts, redis_cell: bool) -> Vec<KeyKind> {
    let mut kinds = vec![
        simple_kind(
            "token bucket",
            "RL.TOKENBUCKET key 100 1 60000",
            &["RL.TOKENBUCKET", "100", "1", "60000"],
        ),
        simple_kind(
            "throttle",
            "RL.THROTTLE key 15 1 60",
            &["RL.THROTTLE", "15", "1", "60"],
        ),
        KeyKind {
            kind: "sliding log, 100 calls in 60 s",
            command: "RL.SLIDING key 100 60000, 100 times 600 ms apart",
            write: Box::new(|pipe, key, _| {
                pipe.cmd("RL.SLIDING")
                    .arg(key)
                    .arg(100)
                    .arg(60_000)
                    .ignore();
            }),
            calls_per_key: 100,
        },
        simple_kind(
            "sliding APPROX",
            "RL.SLIDING key 100 60000 APPROX",
            &["RL.SLIDING", "100", "60000", "APPROX"],
        ),
        simple_kind(
            "fixed window",
            "RL.FIXED key 100 3600000",
            &["RL.FIXED", "100", "3600000"],
        ),
        simple_kind(
            "lease key, one 8-byte holder",
            "RL.ACQUIRE key 10 60000 holder-1",
            &["RL.ACQUIRE", "10", "60000", "holder-1"],
        ),
    ];
    if redis_cell {
        kinds.push(simple_kind(
            "redis-cell",
            "CL.THROTTLE key 15 1 60",
            &["CL.THROTTLE", "15", "1", "60"],
        ));
    }
    let token_bucket = scripts.token_bucket.clone();
    kinds.push(KeyKind {
        kind: "Lua token bucket (hash)",
        command: "EVALSHA <token bucket> 1 key 100 1 60000",
        write: Box::new(move |pipe, key, _| {
            pipe.cmd("EVALSHA")
                .arg(&token_bucket)
                .arg(1)
                .arg(key)
                .arg(100)
                .arg(1)
                .arg(60_000)
                .ignore();
        }),
        calls_per_key: 1,
    });
    let gcra = scripts.gcra.clone();
    kinds.push(KeyKind {
        kind: "Lua GCRA (string)",
        command: "EVALSHA <gcra> 1 key 15 1 60000",
        write: Box::new(move |pipe, key, _| {
            pipe.cmd("EVALSHA")
                .arg(&gcra)
                .arg(1)
                .arg(key)
                .arg(15)
                .arg(1)
                .arg(60_000)
                .ignore();
        }),
        calls_per_key: 1,
    });
    let sliding_log = scripts.sliding_log.clone();
    kinds.push(KeyKind {
        kind: "Lua sliding log (zset), 100 calls",
        command: "EVALSHA <sliding log> 1 key 100 60000 <call>, 100 times",
        write: Box::new(move |pipe, key, call| {
            pipe.cmd("EVALSHA")
                .arg(&sliding_log)
                .arg(1)
                .arg(key)
                .arg(100)
                .arg(60_000)
                .arg(call)
                .ignore();
        }),
        calls_per_key: 100,
    });
    kinds.push(simple_kind(
        "string, 19 digits, TTL (redis-cell's value)",
        "SET key 1763927000123456789 PX 60000",
        &["SET", NINETEEN_DIGITS, "PX", "60000"],
    ));
    kinds.push(simple_kind("INCR counter, no TTL", "INCR key", &["INCR"]));
    kinds
}

/// One row of the bytes-per-key table.
pub struct MemoryRow {
    pub server: String,
    pub kind: &'static str,
    pub command: &'static str,
    pub bytes_per_key: f64,
    pub memory_usage: i64,
}

pub fn measure_memory(binary: &ServerBinary, module: &Path, settings: &Settings) -> Vec<MemoryRow> {
    let keys = settings.keys;
    let server = start(binary, module, settings);
    let mut con = server.connection();
    let name = server_version(&mut con, binary);
    let scripts = Scripts::load(&mut con, binary.name());
    let mut rows = Vec::new();
    for kind in key_kinds(&scripts, settings.redis_cell.is_some()) {
        let () = redis::cmd("FLUSHALL")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("FLUSHALL failed: {e}"));
        settle();
        let before = used_memory(&mut con);
        let started = Instant::now();
        // Kinds with many calls per key fill a tenth of the keys (the same calls in all).
        let keys = if kind.calls_per_key > 1 {
            keys / 10
        } else {
            keys
        };
        let names: Vec<String> = (0..keys).map(|i| format!("key:{i:012}")).collect();
        for call in 0..kind.calls_per_key {
            set_clock_offset(&mut con, call * SPACING_MS);
            for batch in names.chunks(FILL_BATCH) {
                let mut pipe = redis::pipe();
                for key in batch {
                    (kind.write)(&mut pipe, key, call);
                }
                let () = pipe.query(&mut con).unwrap_or_else(|e| {
                    panic!("{}: writing {} keys failed: {e}", binary.name(), kind.kind)
                });
            }
        }
        set_clock_offset(&mut con, 0);
        settle();
        let after = used_memory(&mut con);
        let count: usize = redis::cmd("DBSIZE")
            .query(&mut con)
            .unwrap_or_else(|e| panic!("DBSIZE failed: {e}"));
        assert_eq!(
            count,
            keys,
            "{}: {} keys expired or went missing while measuring (filled in {:?})",
            binary.name(),
            kind.kind,
            started.elapsed()
        );
        let memory_usage: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&names[0])
            .query(&mut con)
            .unwrap_or_else(|e| panic!("MEMORY USAGE failed: {e}"));
        let bytes_per_key = (after as f64 - before as f64) / keys as f64;
        eprintln!(
            "{} {:<38} {bytes_per_key:>7.1} bytes/key, MEMORY USAGE {memory_usage}",
            binary.name(),
            kind.kind
        );
        rows.push(MemoryRow {
            server: name.clone(),
            kind: kind.kind,
            command: kind.command,
            bytes_per_key,
            memory_usage,
        });
    }
    rows
}

/// Lets the server finish incremental rehashing and free client buffers.
fn settle() {
    thread::sleep(Duration::from_millis(500));
}

fn used_memory(con: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(con)
        .unwrap_or_else(|e| panic!("INFO memory failed: {e}"));
    info_field(&info, "used_memory")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no used_memory in INFO memory:\n{info}"))
}
