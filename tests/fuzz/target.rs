//! The server under test: one server with a RESP2 and a RESP3 connection, the clock, the
//! key probes, the log.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::{Cmd, ConnectionLike, Value};
use redlimit_test_support::{Flavor, Server, ServerBinary, ServerBuilder, module_path};

use crate::commands::{Call, bytes, decimal, show};
use crate::keyspace::{KeyState, Keyspace};
use crate::oracle::policies::check_status;
use crate::oracle::replies::{Encoding, Observed, error_text, int_of, text_of};
use crate::settings::{MAX_OFFSET_MS, STABLE_TTL_MS};
use crate::strategies::calls::{FREE_KEYS, OTHER_KEYS, is_pool_key};

/// One server with a RESP2 and a RESP3 connection.
pub struct Target {
    server: Server,
    pub flavor: Flavor,
    resp2: redis::Connection,
    pub resp3: redis::Connection,
    /// A third connection, which WATCHes keys.
    watcher: redis::Connection,
    /// The clock offset last set successfully.
    pub offset: i64,
    /// Commands sent.
    pub sent: u64,
    /// DUMPs of the keys of other types, to show they never change.
    others: Vec<(Vec<u8>, Value)>,
    /// How many replies of each kind each command gave.
    pub outcomes: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

impl Target {
    pub fn start(binary: &ServerBinary) -> Self {
        let server = ServerBuilder::new(binary).module(module_path()).start();
        let resp2 = server.connection();
        let client =
            redis::Client::open(format!("{}?protocol=resp3", server.url())).expect("a RESP3 url");
        let timeout = Some(Duration::from_secs(10));
        let resp3 = client
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("a RESP3 connection");
        resp3.set_read_timeout(timeout).expect("a read timeout");
        resp3.set_write_timeout(timeout).expect("a write timeout");
        let watcher = server.connection();
        let mut target = Target {
            flavor: binary.flavor,
            server,
            resp2,
            resp3,
            watcher,
            offset: 0,
            sent: 0,
            others: Vec::new(),
            outcomes: BTreeMap::new(),
        };
        target
            .seed_other_types()
            .expect("seeding keys of other types");
        target
    }

    /// Whether the server freezes its clock for a whole MULTI/EXEC (Redis 7.2+, Valkey).
    pub fn freezes_time(&self) -> bool {
        self.flavor != Flavor::Redis70
    }

    pub fn send(&mut self, resp3: bool, cmd: &Cmd) -> Result<Value, String> {
        self.sent += 1;
        let con = if resp3 {
            &mut self.resp3
        } else {
            &mut self.resp2
        };
        con.req_command(cmd)
            .map_err(|e| format!("the connection failed (server crashed or hung?): {e}"))
    }

    pub fn query(&mut self, resp3: bool, parts: &[&[u8]]) -> Result<Value, String> {
        let mut cmd = Cmd::new();
        for part in parts {
            cmd.arg(*part);
        }
        self.send(resp3, &cmd)
    }

    pub fn tally(&mut self, call: &Call, seen: &Observed) {
        let counts = self.outcomes.entry(call.command.name()).or_default();
        *counts.entry(seen.outcome()).or_default() += 1;
    }

    /// What the calls answered, one line per command, most frequent first.
    pub fn outcomes(&self) -> String {
        let mut lines = String::new();
        for (command, counts) in &self.outcomes {
            let mut counts: Vec<_> = counts.iter().collect();
            counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let counts: Vec<String> = counts.iter().map(|(o, n)| format!("{o} {n}")).collect();
            lines.push_str(&format!("  {command}: {}\n", counts.join(", ")));
        }
        lines
    }

    /// A query on the watching connection, which must not fail.
    pub fn watch(&mut self, parts: &[&[u8]]) -> Result<Value, String> {
        self.sent += 1;
        let mut cmd = Cmd::new();
        for part in parts {
            cmd.arg(*part);
        }
        let reply = self
            .watcher
            .req_command(&cmd)
            .map_err(|e| format!("the connection failed (server crashed or hung?): {e}"))?;
        match error_text(&reply) {
            Some(text) => Err(format!("{} failed: {text}", show(parts[0]))),
            None => Ok(reply),
        }
    }

    /// A RESP2 query that must not fail.
    pub fn ok(&mut self, parts: &[&[u8]]) -> Result<Value, String> {
        let reply = self.query(false, parts)?;
        match error_text(&reply) {
            Some(text) => {
                let shown: Vec<String> = parts.iter().map(|p| show(p)).collect();
                Err(format!("{} failed: {text}", shown.join(" ")))
            }
            None => Ok(reply),
        }
    }

    fn seed_other_types(&mut self) -> Result<(), String> {
        self.ok(&[b"SET", b"fz:string", b"v"])?;
        self.ok(&[b"RPUSH", b"fz:list", b"a", b"b"])?;
        self.ok(&[b"HSET", b"fz:hash", b"f", b"v"])?;
        self.ok(&[b"SADD", b"fz:set", b"m"])?;
        self.ok(&[b"ZADD", b"fz:zset", b"1", b"m"])?;
        self.ok(&[b"XADD", b"fz:stream", b"*", b"f", b"v"])?;
        for (key, kind) in OTHER_KEYS {
            let seen = self.ok(&[b"TYPE", key.as_bytes()])?;
            if text_of(&seen).as_deref() != Some(kind) {
                return Err(format!("TYPE {key} answered {seen:?}"));
            }
            let dump = self.ok(&[b"DUMP", key.as_bytes()])?;
            self.others.push((bytes(key), dump));
        }
        Ok(())
    }

    /// The server's wall clock in microseconds.
    pub fn server_micros(&mut self) -> Result<u64, String> {
        let reply = self.ok(&[b"TIME"])?;
        let number = |v: &Value| text_of(v).and_then(|t| t.parse::<u64>().ok());
        match &reply {
            Value::Array(parts) if parts.len() == 2 => match (number(&parts[0]), number(&parts[1]))
            {
                (Some(s), Some(us)) => Ok(s * 1_000_000 + us),
                _ => Err(format!("TIME answered {reply:?}")),
            },
            _ => Err(format!("TIME answered {reply:?}")),
        }
    }

    /// Gives every seeded limiter key a state months from expiring (written by calls
    /// with the clock a year ahead) and clears the free keys.
    fn seed_limiters(&mut self) -> Result<(), String> {
        let saved = self.offset;
        self.move_clock(365 * 24 * 3_600 * 1_000)?;
        let long = b"100000000".as_slice();
        let seeds: [(&str, Vec<&[u8]>); 6] = [
            (
                "fz:tokenbucket",
                vec![b"RL.TOKENBUCKET", b"5", b"1", long, b"COST", b"5"],
            ),
            ("fz:throttle", vec![b"RL.THROTTLE", b"5", b"1", long, b"6"]),
            ("fz:fixed", vec![b"RL.FIXED", b"5", long]),
            ("fz:sliding", vec![b"RL.SLIDING", b"5", long]),
            ("fz:approx", vec![b"RL.SLIDING", b"5", long, b"APPROX"]),
            ("fz:leases", vec![b"RL.ACQUIRE", b"2", long, b"job-1"]),
        ];
        for (key, command) in seeds {
            self.ok(&[b"DEL", key.as_bytes()])?;
            let mut parts = vec![command[0], key.as_bytes()];
            parts.extend(&command[1..]);
            let reply = self.ok(&parts)?;
            if let Value::Array(items) = &reply
                && items.first() == Some(&Value::Int(i64::from(key != "fz:throttle")))
            {
                continue;
            }
            return Err(format!("seeding {key} answered {reply:?}"));
        }
        self.move_clock(saved)?;
        self.ok(&[b"DEL", FREE_KEYS[0].as_bytes(), FREE_KEYS[1].as_bytes()])?;
        Ok(())
    }

    /// What `key` holds now. A limiter key expires at its idle moment on the test clock,
    /// so under an offset it idles `offset` ms before the server removes it; past that
    /// moment it is exactly an absent key (RL.STATUS answers nil).
    pub fn probe(&mut self, key: &[u8]) -> Result<KeyState, String> {
        let kind = self.ok(&[b"TYPE", key])?;
        match text_of(&kind).as_deref() {
            Some("none") => Ok(KeyState::Missing),
            Some("redlimit0") => {
                let ttl = int_of(Some(&self.ok(&[b"PTTL", key])?), "PTTL")?;
                let status = self.query(false, &[b"RL.STATUS", key])?;
                // Milliseconds of the test clock left before the key idles.
                let live_ms = ttl.saturating_sub(self.offset);
                if status == Value::Nil {
                    if ttl >= 0 && live_ms >= STABLE_TTL_MS {
                        return Err(format!(
                            "RL.STATUS {} answered nil for a key that idles only in {live_ms} ms",
                            show(key)
                        ));
                    }
                    return Ok(KeyState::Missing);
                }
                let algorithm = check_status(&status, Encoding::plain(false), None)
                    .map_err(|e| format!("RL.STATUS {}: {e}", show(key)))?;
                Ok(KeyState::Limiter {
                    algorithm,
                    may_vanish: ttl == -2 || ttl >= 0 && live_ms < STABLE_TTL_MS,
                })
            }
            Some(_) => Ok(KeyState::Other),
            None => Err(format!("TYPE answered {kind:?}")),
        }
    }

    /// Follows a move of the test clock from `from` in the key model: moved forward, a
    /// limiter may now idle within the batch; moved back, a key that was idle (still
    /// stored, answering as absent) may be live again.
    pub fn clock_moved(&mut self, keys: &mut Keyspace, from: i64) -> Result<(), String> {
        if self.offset == from {
            return Ok(());
        }
        let names: Vec<Vec<u8>> = keys.keys().cloned().collect();
        for key in names {
            match keys[&key] {
                KeyState::Limiter {
                    algorithm,
                    may_vanish: false,
                } if self.offset > from => {
                    let ttl = int_of(Some(&self.ok(&[b"PTTL", &key])?), "PTTL")?;
                    let live_ms = ttl.saturating_sub(self.offset);
                    if ttl == -2 || ttl >= 0 && live_ms < STABLE_TTL_MS {
                        let may_vanish = true;
                        keys.insert(
                            key,
                            KeyState::Limiter {
                                algorithm,
                                may_vanish,
                            },
                        );
                    }
                }
                KeyState::Missing if self.offset < from => {
                    let state = self.probe(&key)?;
                    keys.insert(key, state);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Seeds the pool and probes every key `calls` may touch.
    pub fn prepare<'a>(
        &mut self,
        calls: impl Iterator<Item = &'a Call>,
    ) -> Result<Keyspace, String> {
        self.seed_limiters()?;
        let mut keys = Keyspace::new();
        for call in calls {
            for key in call.keys() {
                if !keys.contains_key(key) {
                    let state = self.probe(key)?;
                    keys.insert(key.clone(), state);
                }
            }
        }
        Ok(keys)
    }

    /// The server is alive on both connections, the other types are untouched, and the
    /// random keys of the batch are gone.
    pub fn finish(&mut self, keys: &Keyspace) -> Result<(), String> {
        for resp3 in [false, true] {
            let pong = self.query(resp3, &[b"PING"])?;
            if text_of(&pong).as_deref() != Some("PONG") {
                return Err(format!("PING answered {pong:?}"));
            }
        }
        for (key, dump) in self.others.clone() {
            if self.ok(&[b"DUMP", &key])? != dump {
                return Err(format!(
                    "{} changed: an RL.* command touched it",
                    show(&key)
                ));
            }
        }
        for key in keys.keys().filter(|k| !is_pool_key(k)) {
            self.ok(&[b"DEL", key])?;
        }
        Ok(())
    }

    /// `CONFIG SET redlimit.clock-offset-ms <raw>`: valid values apply, invalid ones are
    /// errors that change nothing.
    pub fn set_offset(&mut self, raw: &[u8]) -> Result<(), String> {
        let reply = self.query(
            false,
            &[b"CONFIG", b"SET", b"redlimit.clock-offset-ms", raw],
        )?;
        let canonical = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse::<i64>().ok().filter(|n| n.to_string() == s));
        let in_range = canonical.is_some_and(|n| (0..=MAX_OFFSET_MS).contains(&n));
        let got = self.ok(&[b"CONFIG", b"GET", b"redlimit.clock-offset-ms"])?;
        let got = match &got {
            Value::Array(items) if items.len() == 2 => text_of(&items[1]),
            _ => None,
        }
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| format!("CONFIG GET answered {got:?}"))?;
        let what = format!("CONFIG SET redlimit.clock-offset-ms {}", show(raw));
        match error_text(&reply) {
            Some(text) if in_range => Err(format!("{what} refused a valid offset: {text}")),
            Some(text) if !text.starts_with("ERR ") => Err(format!("{what}: {text}")),
            Some(_) if got != self.offset => Err(format!(
                "{what} failed but the offset moved from {} to {got}",
                self.offset
            )),
            Some(_) => Ok(()),
            None if canonical.is_some() && !in_range => {
                Err(format!("{what} accepted an out-of-range offset"))
            }
            None if !(0..=MAX_OFFSET_MS).contains(&got) => {
                Err(format!("{what} left the offset at {got}"))
            }
            None if canonical.is_some_and(|n| n != got) => {
                Err(format!("{what} answered OK but the offset is {got}"))
            }
            None => {
                self.offset = got;
                Ok(())
            }
        }
    }

    /// Moves the test clock to `offset` (a valid one).
    pub fn move_clock(&mut self, offset: i64) -> Result<(), String> {
        self.set_offset(&decimal(offset))?;
        if self.offset != offset {
            return Err(format!("the clock offset is {}, not {offset}", self.offset));
        }
        Ok(())
    }

    pub fn check_log(&self) {
        let log = self.server.log();
        let lower = log.to_lowercase();
        for marker in ["panic", "internal error", "keeps running"] {
            assert!(
                !lower.contains(marker),
                "{}: the server log mentions {marker:?}:\n{log}",
                self.flavor.name()
            );
        }
    }
}
