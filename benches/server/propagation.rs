//! Propagated bytes per call: on a primary with `appendonly yes` and one replica, AOF
//! and replication bytes per allowed, denied, `PEEK` and `COST 0` call of each kind.

use std::path::Path;
use std::thread;
use std::time::Duration;

use redlimit_test_support::ServerBinary;

use crate::scripts::Scripts;
use crate::{Settings, builder, info_field, server_version};

/// Calls of each kind when measuring propagated bytes.
pub const PROPAGATION_CALLS: u64 = 1_000;

/// One row of the propagated-bytes table.
pub struct PropagationRow {
    pub server: String,
    pub command: String,
    pub outcome: &'static str,
    pub aof_bytes: f64,
    pub repl_bytes: f64,
}

/// One measured kind of call: the command for key number `i`, what it must answer.
struct PropagationCase {
    command: String,
    outcome: &'static str,
    /// One call per key made (not measured) first, e.g. to exhaust a limit.
    setup: Option<Vec<String>>,
    argv: Vec<String>,
    /// What the first element of each reply must be (`None`: not checked).
    expect_first: Option<i64>,
}

fn propagation_cases(scripts: &Scripts, redis_cell: bool) -> Vec<PropagationCase> {
    // `setup`: how many trailing arguments to drop for the setup call (None: no setup).
    let case = |command: &str, outcome, setup: Option<usize>, argv: &[&str], expect_first| {
        let argv: Vec<String> = argv.iter().map(|&arg| arg.to_owned()).collect();
        PropagationCase {
            command: command.to_owned(),
            outcome,
            setup: setup.map(|drop| argv[..argv.len() - drop].to_vec()),
            argv,
            expect_first,
        }
    };
    let mut cases = vec![
        case("INCR key", "–", None, &["INCR", "p:incr:KEY"], None),
        case(
            "RL.TOKENBUCKET key 1 1 3600000",
            "allowed",
            None,
            &["RL.TOKENBUCKET", "p:tb:KEY", "1", "1", "3600000"],
            Some(1),
        ),
        case(
            "RL.TOKENBUCKET key 1 1 3600000",
            "denied",
            Some(0),
            &["RL.TOKENBUCKET", "p:tb2:KEY", "1", "1", "3600000"],
            Some(0),
        ),
        case(
            "RL.TOKENBUCKET key 5 1 3600000 PEEK",
            "allowed (PEEK)",
            Some(1),
            &["RL.TOKENBUCKET", "p:tb3:KEY", "5", "1", "3600000", "PEEK"],
            Some(1),
        ),
        case(
            "RL.TOKENBUCKET key 5 1 3600000 COST 0",
            "allowed (COST 0)",
            Some(2),
            &[
                "RL.TOKENBUCKET",
                "p:tb4:KEY",
                "5",
                "1",
                "3600000",
                "COST",
                "0",
            ],
            Some(1),
        ),
        case(
            "RL.THROTTLE key 0 1 3600",
            "allowed",
            None,
            &["RL.THROTTLE", "p:th:KEY", "0", "1", "3600"],
            Some(0),
        ),
        case(
            "RL.THROTTLE key 0 1 3600",
            "denied",
            Some(0),
            &["RL.THROTTLE", "p:th2:KEY", "0", "1", "3600"],
            Some(1),
        ),
        case(
            "RL.SLIDING key 1 3600000",
            "allowed",
            None,
            &["RL.SLIDING", "p:sl:KEY", "1", "3600000"],
            Some(1),
        ),
        case(
            "RL.SLIDING key 1 3600000",
            "denied",
            Some(0),
            &["RL.SLIDING", "p:sl2:KEY", "1", "3600000"],
            Some(0),
        ),
        case(
            "RL.SLIDING key 1 3600000 PEEK",
            "denied (PEEK)",
            Some(1),
            &["RL.SLIDING", "p:sl3:KEY", "1", "3600000", "PEEK"],
            Some(0),
        ),
        case(
            "RL.FIXED key 1 3600000",
            "allowed",
            None,
            &["RL.FIXED", "p:fx:KEY", "1", "3600000"],
            Some(1),
        ),
        case(
            "RL.FIXED key 1 3600000",
            "denied",
            Some(0),
            &["RL.FIXED", "p:fx2:KEY", "1", "3600000"],
            Some(0),
        ),
        case(
            "RL.ALL 2 {k}m {k}h SLIDING 1 60000 FIXED 10 3600000",
            "allowed",
            None,
            &[
                "RL.ALL", "2", "{p:KEY}m", "{p:KEY}h", "SLIDING", "1", "60000", "FIXED", "10",
                "3600000",
            ],
            Some(1),
        ),
        case(
            "RL.ALL 2 {k}m {k}h SLIDING 1 60000 FIXED 10 3600000",
            "denied",
            Some(0),
            &[
                "RL.ALL",
                "2",
                "{p2:KEY}m",
                "{p2:KEY}h",
                "SLIDING",
                "1",
                "60000",
                "FIXED",
                "10",
                "3600000",
            ],
            Some(0),
        ),
        case(
            "RL.ACQUIRE key 1 60000 holder",
            "allowed",
            None,
            &["RL.ACQUIRE", "p:ls:KEY", "1", "60000", "holder"],
            Some(1),
        ),
        case(
            "Lua token bucket (hash), capacity 1",
            "allowed",
            None,
            &[
                "EVALSHA",
                &scripts.token_bucket,
                "1",
                "p:ltb:KEY",
                "1",
                "1",
                "3600000",
            ],
            Some(1),
        ),
        case(
            "Lua token bucket (hash), capacity 1",
            "denied",
            Some(0),
            &[
                "EVALSHA",
                &scripts.token_bucket,
                "1",
                "p:ltb2:KEY",
                "1",
                "1",
                "3600000",
            ],
            Some(0),
        ),
        case(
            "Lua GCRA, burst 0",
            "allowed",
            None,
            &[
                "EVALSHA",
                &scripts.gcra,
                "1",
                "p:lgc:KEY",
                "0",
                "1",
                "3600000",
            ],
            Some(1),
        ),
        case(
            "Lua GCRA, burst 0",
            "denied",
            Some(0),
            &[
                "EVALSHA",
                &scripts.gcra,
                "1",
                "p:lgc2:KEY",
                "0",
                "1",
                "3600000",
            ],
            Some(0),
        ),
        case(
            "Lua sliding log (zset), limit 1",
            "allowed",
            None,
            &[
                "EVALSHA",
                &scripts.sliding_log,
                "1",
                "p:lsl:KEY",
                "1",
                "3600000",
                "m",
            ],
            Some(1),
        ),
        case(
            "Lua sliding log (zset), limit 1",
            "denied",
            Some(0),
            &[
                "EVALSHA",
                &scripts.sliding_log,
                "1",
                "p:lsl2:KEY",
                "1",
                "3600000",
                "m",
            ],
            Some(0),
        ),
        case(
            "Lua fixed window, limit 1",
            "allowed",
            None,
            &[
                "EVALSHA",
                &scripts.fixed_window,
                "1",
                "p:lfx:KEY",
                "1",
                "3600000",
            ],
            Some(1),
        ),
        case(
            "Lua fixed window, limit 1",
            "denied",
            Some(0),
            &[
                "EVALSHA",
                &scripts.fixed_window,
                "1",
                "p:lfx2:KEY",
                "1",
                "3600000",
            ],
            Some(0),
        ),
    ];
    if redis_cell {
        cases.push(case(
            "CL.THROTTLE key 0 1 3600",
            "allowed",
            None,
            &["CL.THROTTLE", "p:cl:KEY", "0", "1", "3600"],
            Some(0),
        ));
        cases.push(case(
            "CL.THROTTLE key 0 1 3600",
            "denied",
            Some(0),
            &["CL.THROTTLE", "p:cl2:KEY", "0", "1", "3600"],
            Some(1),
        ));
    }
    cases
}

/// AOF and replication bytes per call: a primary with `appendonly yes` (no automatic
/// rewrite) and one replica; `aof_current_size` and `master_repl_offset` before and after
/// `PROPAGATION_CALLS` calls on distinct keys.
pub fn measure_propagation(
    binary: &ServerBinary,
    module: &Path,
    settings: &Settings,
) -> Vec<PropagationRow> {
    let primary = builder(binary, module, settings)
        .args(["--appendonly", "yes", "--appendfsync", "no"])
        .args(["--auto-aof-rewrite-percentage", "0"])
        .start();
    let replica = builder(binary, module, settings)
        .replica_of(&primary)
        .start();
    replica.wait_for_sync();
    let mut con = primary.connection();
    let name = server_version(&mut con, binary);
    let scripts = Scripts::load(&mut con, binary.name());
    // A first write, so that the one-time SELECT is not counted.
    let () = redis::cmd("SET")
        .arg("p:first")
        .arg(1)
        .query(&mut con)
        .unwrap_or_else(|e| panic!("SET failed: {e}"));
    let mut rows = Vec::new();
    for case in propagation_cases(&scripts, settings.redis_cell.is_some()) {
        let calls = |con: &mut redis::Connection| -> Vec<redis::Value> {
            let mut pipe = redis::pipe();
            for i in 0..PROPAGATION_CALLS {
                let cmd = pipe.cmd(&case.argv[0]);
                for arg in &case.argv[1..] {
                    cmd.arg(arg.replace("KEY", &i.to_string()));
                }
            }
            pipe.query(con)
                .unwrap_or_else(|e| panic!("{}: {} failed: {e}", binary.name(), case.command))
        };
        if let Some(setup) = &case.setup {
            let mut pipe = redis::pipe();
            for i in 0..PROPAGATION_CALLS {
                let cmd = pipe.cmd(&setup[0]);
                for arg in &setup[1..] {
                    cmd.arg(arg.replace("KEY", &i.to_string()));
                }
            }
            let _: Vec<redis::Value> = pipe.query(&mut con).unwrap_or_else(|e| {
                panic!("{}: setup of {} failed: {e}", binary.name(), case.command)
            });
        }
        thread::sleep(Duration::from_millis(100));
        let before = propagated(&mut con);
        let replies = calls(&mut con);
        thread::sleep(Duration::from_millis(100));
        let after = propagated(&mut con);
        if let Some(expected) = case.expect_first {
            let first = |reply: &redis::Value| match reply {
                redis::Value::Array(items) => match items.first() {
                    Some(redis::Value::Int(n)) => Some(*n),
                    _ => None,
                },
                _ => None,
            };
            assert!(
                replies.iter().all(|reply| first(reply) == Some(expected)),
                "{}: {} did not answer {} every time: {:?}",
                binary.name(),
                case.command,
                case.outcome,
                replies.first()
            );
        }
        let per_call = |b: u64, a: u64| a.saturating_sub(b) as f64 / PROPAGATION_CALLS as f64;
        let row = PropagationRow {
            server: name.clone(),
            command: case.command.clone(),
            outcome: case.outcome,
            aof_bytes: per_call(before.0, after.0),
            repl_bytes: per_call(before.1, after.1),
        };
        eprintln!(
            "{} {:<52} {:<16} {:>6.1} AOF bytes/call {:>6.1} replication bytes/call",
            binary.name(),
            row.command,
            row.outcome,
            row.aof_bytes,
            row.repl_bytes
        );
        rows.push(row);
    }
    drop(replica);
    rows
}

/// `(aof_current_size, master_repl_offset)` of a primary.
fn propagated(con: &mut redis::Connection) -> (u64, u64) {
    let info: String = redis::cmd("INFO")
        .arg("all")
        .query(con)
        .unwrap_or_else(|e| panic!("INFO failed: {e}"));
    let field = |name: &str| -> u64 {
        info_field(&info, name)
            .and_then(|value| value.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in INFO"))
    };
    (field("aof_current_size"), field("master_repl_offset"))
}
