//! Bounded cost of usage counters, as `tests/bounds.rs` checks the limiters: on a full
//! ring of the most buckets, every amount at its largest encoding, one call takes at
//! most 1 ms of server time and propagates at most 4 KiB (the AOF's growth), with the
//! optimised module.

use redis::{Connection, Value, cmd};
use redlimit_core::{Limiter, MAX_USAGE_AMOUNT, MAX_USAGE_BUCKETS, UsageBuckets, UsageShape};
use redlimit_test_support::{
    ServerBuilder, aof_size, available_servers, info_value, optimized_module_path,
};

const MOST_MICROS: u64 = 1_000;
const MOST_BYTES: i64 = 4 * 1024;

/// One call: its server time in µs (`INFO commandstats`), the bytes it propagated, its
/// reply.
fn measure(con: &mut Connection, args: &[String]) -> (u64, i64, Value) {
    let _: () = cmd("CONFIG").arg("RESETSTAT").query(con).unwrap();
    let before = aof_size(con);
    let reply: Value = cmd(&args[0]).arg(&args[1..]).query(con).unwrap();
    let name = args[0].to_lowercase();
    let stats = info_value(con, "commandstats", &format!("cmdstat_{name}")).unwrap();
    let micros = stats
        .split(',')
        .find_map(|part| part.strip_prefix("usec="))
        .and_then(|usec| usec.parse().ok())
        .unwrap_or_else(|| panic!("cmdstat_{name}: {stats}"));
    (micros, aof_size(con) - before, reply)
}

#[test]
fn a_full_ring_of_the_most_buckets_is_fast_and_propagates_little() {
    let module = optimized_module_path();
    for binary in available_servers() {
        let who = binary.name();
        let server = ServerBuilder::new(&binary)
            .module(&module)
            .args(["--appendonly", "yes", "--appendfsync", "no"])
            .start();
        let con = &mut server.connection();
        let (seconds, _): (u64, u64) = cmd("TIME").query(con).unwrap();
        let shape = UsageShape::per_minute(MAX_USAGE_BUCKETS).unwrap();
        let newest_ms = shape.bucket_start(seconds * 1_000);
        let amounts = vec![MAX_USAGE_AMOUNT / 2; MAX_USAGE_BUCKETS as usize];
        let counted = UsageBuckets::from_parts(&shape, newest_ms, amounts).unwrap();
        let state = Limiter::Usage(shape, Box::new(counted)).encode();
        assert!(state.len() > 12_000, "{who}: {} bytes", state.len());
        let _: () = cmd("RL.SETSTATE").arg("u").arg(&state).query(con).unwrap();
        let add = ["RL.USAGE.ADD", "u", "1", "60000", "1440"].map(String::from);
        let read = ["RL.USAGE", "u"].map(String::from);
        let mut report = Vec::new();
        for (what, args) in [
            ("RL.USAGE.ADD on a full ring", &add[..]),
            ("RL.USAGE of a full ring", &read[..]),
        ] {
            let (micros, bytes, reply) = measure(con, args);
            report.push(format!("{what}: {micros} µs, {bytes} B"));
            match &reply {
                Value::Int(total) => assert_eq!(*total, i64::MAX, "{who}: saturated"),
                Value::Array(items) => assert_eq!(items.len(), 2_880, "{who}"),
                other => panic!("{who}: {what}: {other:?}"),
            }
            assert!(micros <= MOST_MICROS, "{who}: {what} took {micros} µs");
            assert!(bytes <= MOST_BYTES, "{who}: {what} propagated {bytes} B");
        }
        eprintln!("{who}: {}", report.join("; "));
    }
}
