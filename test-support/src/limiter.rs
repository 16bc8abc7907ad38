//! Reading what a redlimit key holds on a live server, and moving the module's clock.
//!
//! These helpers let a test compare a key across servers, restarts and replicas
//! exactly: [`snapshot`] gives the stored bytes (from `DUMP`), the server's own digest
//! (`DEBUG DIGEST-VALUE`) and the absolute expiry (`PEXPIRETIME`); [`status`] gives
//! `RL.STATUS` as named numbers.
//!
//! ```no_run
//! use redlimit_test_support::{ServerBuilder, available_servers, module_path};
//! use redlimit_test_support::{set_clock_offset, snapshot, status};
//!
//! for binary in available_servers() {
//!     let server = ServerBuilder::new(&binary).module(module_path()).start();
//!     let mut con = server.connection();
//!     let _: Vec<i64> = redis::cmd("RL.TOKENBUCKET")
//!         .arg("k").arg(5).arg(1).arg(1_000)
//!         .query(&mut con)
//!         .unwrap();
//!     set_clock_offset(&mut con, 500);
//!     let report = status(&mut con, "k").unwrap();
//!     assert_eq!(report.algorithm, "tokenbucket");
//!     assert_eq!(report.number("remaining"), 4);
//!     let stored = snapshot(&mut con, "k").unwrap();
//!     assert!(stored.expire_at_ms > 0);
//! }
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{ConnectionLike, ToRedisArgs, Value};

/// The module config that moves its clock: `redlimit.clock-offset-ms`.
pub const CLOCK_OFFSET_CONFIG: &str = "redlimit.clock-offset-ms";

/// Sets the module's test clock offset (`CONFIG SET redlimit.clock-offset-ms <ms>`): from
/// now on every decision on this server sees the server clock plus `offset_ms`.
///
/// # Panics
///
/// If the server refuses (module not loaded, value out of range).
pub fn set_clock_offset(con: &mut dyn ConnectionLike, offset_ms: u64) {
    let reply: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg(CLOCK_OFFSET_CONFIG)
        .arg(offset_ms)
        .query(con);
    if let Err(e) = reply {
        panic!("CONFIG SET {CLOCK_OFFSET_CONFIG} {offset_ms} failed: {e}");
    }
}

/// `RL.STATUS key` in a comparable form: the algorithm and every numeric field by name
/// (`capacity`, ..., `allowed`, `limit`, `remaining`, `retry_after_ms`,
/// `reset_after_ms`; `allowed` as 0/1 whatever the protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// `tokenbucket` or `throttle`.
    pub algorithm: String,
    /// Every other field, by name.
    pub numbers: BTreeMap<String, i64>,
}

/// The fields of [`Status`] that count time left and so shrink as the clock moves.
const TIME_FIELDS: [&str; 2] = ["retry_after_ms", "reset_after_ms"];

impl Status {
    /// The field `name`.
    ///
    /// # Panics
    ///
    /// If the reply had no such field.
    pub fn number(&self, name: &str) -> i64 {
        match self.numbers.get(name) {
            Some(&value) => value,
            None => panic!("RL.STATUS has no field {name:?}: {self:?}"),
        }
    }

    /// Checks that `later`, read at most `elapsed` after `self` under the same clock
    /// offset, reports the same limiter: every field equal except the time left
    /// (`retry_after_ms`, `reset_after_ms`), which may only have shrunk, by at most
    /// `elapsed` plus 1 ms of rounding (or grown by that 1 ms), and keeps its sign (0
    /// stays 0, -1 stays -1).
    ///
    /// Use a policy that refills slowly, so that no token arrives in `elapsed`.
    ///
    /// # Errors
    ///
    /// A description of the first difference.
    pub fn matches_later(&self, later: &Status, elapsed: Duration) -> Result<(), String> {
        if self.algorithm != later.algorithm || self.numbers.len() != later.numbers.len() {
            return Err(format!("different limiters: {self:?} then {later:?}"));
        }
        let slack = i64::try_from(elapsed.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        for (name, &before) in &self.numbers {
            let Some(&after) = later.numbers.get(name) else {
                return Err(format!("{name} missing later: {later:?}"));
            };
            let same = if TIME_FIELDS.contains(&name.as_str()) && before > 0 {
                // +1: a lease time is rounded up from a microsecond clock, so a new
                // holder's lease reads `lease_ms` or `lease_ms + 1` at different instants.
                after > 0 && after <= before + 1 && before - after <= slack
            } else {
                after == before
            };
            if !same {
                return Err(format!(
                    "{name} was {before}, then {after} (read {elapsed:?} later): \
                     {self:?} then {later:?}"
                ));
            }
        }
        Ok(())
    }

    /// Reads an `RL.STATUS` reply (RESP2 flat array or RESP3 map); `None` for nil.
    ///
    /// # Panics
    ///
    /// On a reply of another shape.
    pub fn from_reply(reply: &Value) -> Option<Status> {
        let pairs: Vec<(&Value, &Value)> = match reply {
            Value::Nil => return None,
            Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
            Value::Array(items) if items.len() % 2 == 0 => items
                .chunks(2)
                .filter_map(|pair| Some((pair.first()?, pair.get(1)?)))
                .collect(),
            other => panic!("RL.STATUS replied {other:?}"),
        };
        let mut algorithm = None;
        let mut numbers = BTreeMap::new();
        for (name, value) in pairs {
            let name = text(name).unwrap_or_else(|| panic!("RL.STATUS field name {name:?}"));
            match value {
                Value::Int(n) => {
                    numbers.insert(name, *n);
                }
                Value::Boolean(b) => {
                    numbers.insert(name, i64::from(*b));
                }
                other if name == "algorithm" => algorithm = text(other),
                other => panic!("RL.STATUS field {name} = {other:?}"),
            }
        }
        let algorithm = algorithm.unwrap_or_else(|| panic!("RL.STATUS has no algorithm"));
        Some(Status { algorithm, numbers })
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// `RL.STATUS key` on this connection; `None` when the key does not exist.
///
/// # Panics
///
/// If the command fails or replies something else than a status.
pub fn status<K: ToRedisArgs>(con: &mut dyn ConnectionLike, key: K) -> Option<Status> {
    let mut cmd = redis::cmd("RL.STATUS");
    cmd.arg(key);
    if !crate::test_engine().loads_module() {
        // The same question to the client's scripts (REDLIMIT_TEST_ENGINE).
        cmd = redlimit::scripts::translate(&cmd, None)
            .unwrap_or_else(|e| panic!("{e}"))
            .eval();
    }
    let reply: Value = cmd
        .query(con)
        .unwrap_or_else(|e| panic!("RL.STATUS failed: {e}"));
    Status::from_reply(&reply)
}

/// The redlimit state bytes inside a `DUMP` payload of a redlimit key: the exact bytes
/// the module saved (its versioned encoding, as `RL.SETSTATE` takes them).
///
/// The payload is a module value (`RDB_TYPE_MODULE_2`): the module type id, one string
/// (the state), the end-of-value opcode, then the RDB version and a CRC64.
///
/// # Errors
///
/// If the payload is not one redlimit value of that shape.
pub fn state_from_dump(payload: &[u8]) -> Result<Vec<u8>, String> {
    const RDB_TYPE_MODULE_2: u8 = 7;
    const OPCODE_STRING: u64 = 5;
    const OPCODE_EOF: u64 = 0;
    let mut reader = RdbReader(payload);
    if reader.byte()? != RDB_TYPE_MODULE_2 {
        return Err(format!("not a module value: {payload:?}"));
    }
    let _type_id = reader.length()?;
    if reader.length()? != OPCODE_STRING {
        return Err(format!(
            "the value does not start with a string: {payload:?}"
        ));
    }
    let state = reader.string()?;
    if reader.length()? != OPCODE_EOF {
        return Err(format!("more than one string in the value: {payload:?}"));
    }
    // What is left is the RDB version (2 bytes) and the CRC64 (8 bytes).
    if reader.0.len() != 10 {
        return Err(format!("unexpected footer after the value: {payload:?}"));
    }
    Ok(state)
}

/// LZF (as Redis writes it): literal runs `000LLLLL` of L + 1 bytes, and back references
/// `LLLooooo oooooooo` (L = 7: one more length byte) copying L + 2 bytes from o + 1 back.
fn lzf_decompress(input: &[u8], len: usize) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let mut bytes = input.iter().copied();
    let mut next = || bytes.next().ok_or_else(|| "truncated LZF data".to_owned());
    while out.len() < len {
        let control = usize::from(next()?);
        if control < 32 {
            for _ in 0..=control {
                out.push(next()?);
            }
            continue;
        }
        let mut run = control >> 5;
        if run == 7 {
            run += usize::from(next()?);
        }
        let back = ((control & 0x1f) << 8) + usize::from(next()?) + 1;
        let start = out
            .len()
            .checked_sub(back)
            .ok_or("LZF reference before the start")?;
        for i in 0..run + 2 {
            let byte = *out.get(start + i).ok_or("LZF reference past the end")?;
            out.push(byte);
        }
    }
    if out.len() != len {
        return Err(format!("LZF gave {} bytes, expected {len}", out.len()));
    }
    Ok(out)
}

/// Reads RDB length-encoded numbers.
struct RdbReader<'a>(&'a [u8]);

impl RdbReader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated: wanted {n} bytes, {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    /// A string: plain, or LZF-compressed (`rdbcompression yes` compresses strings over
    /// 20 bytes).
    fn string(&mut self) -> Result<Vec<u8>, String> {
        const LZF: u8 = 0xc3;
        if self.0.first() != Some(&LZF) {
            let len = usize::try_from(self.length()?).map_err(|e| e.to_string())?;
            return Ok(self.take(len)?.to_vec());
        }
        self.byte()?;
        let compressed = usize::try_from(self.length()?).map_err(|e| e.to_string())?;
        let len = usize::try_from(self.length()?).map_err(|e| e.to_string())?;
        lzf_decompress(self.take(compressed)?, len)
    }

    fn length(&mut self) -> Result<u64, String> {
        let first = self.byte()?;
        let big_endian = |bytes: &[u8]| bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b));
        match first >> 6 {
            0 => Ok(u64::from(first & 0x3f)),
            1 => Ok((u64::from(first & 0x3f) << 8) | u64::from(self.byte()?)),
            _ if first == 0x80 => Ok(big_endian(self.take(4)?)),
            _ if first == 0x81 => Ok(big_endian(self.take(8)?)),
            _ => Err(format!("unsupported RDB length byte {first:#04x}")),
        }
    }
}

/// The stored state bytes of `key` (see [`state_from_dump`]); `None` when it does not
/// exist.
///
/// # Panics
///
/// If `DUMP` fails or the key is not a redlimit limiter.
pub fn stored_state<K: ToRedisArgs>(con: &mut dyn ConnectionLike, key: K) -> Option<Vec<u8>> {
    let payload: Option<Vec<u8>> = redis::cmd("DUMP")
        .arg(key)
        .query(con)
        .unwrap_or_else(|e| panic!("DUMP failed: {e}"));
    let payload = payload?;
    Some(state_from_dump(&payload).unwrap_or_else(|e| panic!("DUMP payload: {e}")))
}

/// `DEBUG DIGEST-VALUE key`: the server's hash of the value (all zeros for no key).
/// Needs `enable-debug-command`, which the harness sets.
///
/// # Panics
///
/// If the command fails.
pub fn digest_value<K: ToRedisArgs>(con: &mut dyn ConnectionLike, key: K) -> String {
    let digests: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query(con)
        .unwrap_or_else(|e| panic!("DEBUG DIGEST-VALUE failed: {e}"));
    digests.into_iter().next().unwrap_or_default()
}

/// Everything that must be identical for a limiter key to be "the same" on two servers,
/// or before and after a restart: what [`snapshot`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySnapshot {
    /// The stored state bytes (from `DUMP`).
    pub state: Vec<u8>,
    /// `DEBUG DIGEST-VALUE`.
    pub digest: String,
    /// `PEXPIRETIME`: absolute Unix milliseconds, or -1 without an expiry.
    pub expire_at_ms: i64,
}

/// The [`KeySnapshot`] of a redlimit key; `None` when it does not exist.
///
/// # Panics
///
/// If a command fails or the key is not a redlimit limiter.
pub fn snapshot<K: ToRedisArgs>(con: &mut dyn ConnectionLike, key: K) -> Option<KeySnapshot> {
    let state = stored_state(con, &key)?;
    let digest = digest_value(con, &key);
    let expire_at_ms: i64 = redis::cmd("PEXPIRETIME")
        .arg(&key)
        .query(con)
        .unwrap_or_else(|e| panic!("PEXPIRETIME failed: {e}"));
    Some(KeySnapshot {
        state,
        digest,
        expire_at_ms,
    })
}

/// The value of `field` in `INFO <section>`.
///
/// # Panics
///
/// If `INFO` fails.
pub fn info_value(con: &mut dyn ConnectionLike, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(con)
        .unwrap_or_else(|e| panic!("INFO {section} failed: {e}"));
    info.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == field).then(|| value.trim().to_owned())
    })
}

/// The AOF's size in bytes (`aof_current_size` of `INFO persistence`).
///
/// # Panics
///
/// If `INFO` fails or the server has no AOF.
pub fn aof_size(con: &mut dyn ConnectionLike) -> i64 {
    info_value(con, "persistence", "aof_current_size")
        .and_then(|v| v.parse().ok())
        .expect("aof_current_size (is appendonly on?)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_state_in_a_dump_payload() {
        // A DUMP of a token bucket taken from Redis 7.0.
        let payload = b"\x07\x81\xad\xe7\x65\x8a\x68\xad\xd0\x01\x05\x11\x01\x01\x05\x01\xe8\x07\
\xc0\x84\x3d\xc8\xd7\xa1\xc2\xef\x9e\x98\x03\x00\x0a\x00\xdf\x76\x19\xc0\x47\x71\x86\x72";
        let state = state_from_dump(payload).unwrap();
        assert_eq!(state.len(), 17);
        assert_eq!(state.get(..2), Some(&[1u8, 1][..]));
        assert!(state_from_dump(&payload[..20]).is_err());
        assert!(state_from_dump(b"\x00\x01a").is_err());
    }

    #[test]
    fn status_reads_both_protocols() {
        let field = |name: &str| Value::BulkString(name.as_bytes().to_vec());
        let resp2 = Value::Array(vec![
            field("algorithm"),
            field("tokenbucket"),
            field("allowed"),
            Value::Int(1),
            field("reset_after_ms"),
            Value::Int(40),
        ]);
        let resp3 = Value::Map(vec![
            (field("algorithm"), field("tokenbucket")),
            (field("allowed"), Value::Boolean(true)),
            (field("reset_after_ms"), Value::Int(40)),
        ]);
        let status = Status::from_reply(&resp2).unwrap();
        assert_eq!(Status::from_reply(&resp3), Some(status.clone()));
        assert_eq!(status.number("allowed"), 1);
        assert_eq!(Status::from_reply(&Value::Nil), None);

        let mut later = status.clone();
        later.numbers.insert("reset_after_ms".into(), 35);
        assert!(
            status
                .matches_later(&later, Duration::from_millis(5))
                .is_ok()
        );
        assert!(
            status
                .matches_later(&later, Duration::from_millis(3))
                .is_err()
        );
        later.numbers.insert("allowed".into(), 0);
        assert!(
            status
                .matches_later(&later, Duration::from_secs(1))
                .is_err()
        );
    }

    #[test]
    fn compressed_states_are_read_back() {
        // `DUMP` of an exact sliding log with 30 entries, compressed by the server (LZF).
        let payload = [
            7, 129, 173, 231, 101, 138, 104, 173, 208, 1, 5, 195, 49, 64, 72, 14, 1, 4, 100, 224,
            212, 3, 211, 162, 179, 209, 160, 52, 0, 1, 4, 96, 1, 0, 6, 160, 1, 0, 5, 160, 7, 64, 9,
            0, 5, 32, 25, 64, 7, 0, 7, 32, 5, 64, 1, 64, 41, 64, 19, 128, 1, 1, 4, 1, 0, 10, 0, 2,
            216, 190, 219, 187, 148, 113, 167,
        ];
        let state = state_from_dump(&payload).unwrap();
        assert_eq!(
            state.len(),
            72,
            "3 + window 3 + first time 6 + 30 entries of 2 bytes"
        );
        // Version 1, algorithm 4 (sliding), limit 100, ...
        assert_eq!(state[..3], [1, 4, 100]);
        // The entries: (ms since the previous one, cost) pairs, every cost 1.
        let costs: Vec<u8> = state[12..].iter().skip(1).step_by(2).copied().collect();
        assert_eq!(costs, [1; 30]);
    }
}
