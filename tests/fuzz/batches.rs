//! Batches of random calls: one by one, inside MULTI/EXEC, inside EVAL scripts.

use redis::{Cmd, Value};

use crate::commands::{Call, show};
use crate::keyspace::apply;
use crate::oracle::Failure;
use crate::oracle::check::check;
use crate::oracle::expect::expected;
use crate::oracle::replies::{Encoding, error_text, text_of};
use crate::strategies::limiters::Step;
use crate::target::Target;

impl Target {
    /// Random calls one by one over RESP2 or RESP3, with clock moves and COMMAND GETKEYS in
    /// between.
    pub fn plain_batch(&mut self, steps: &[Step]) -> Result<(), String> {
        let calls = steps.iter().filter_map(|step| match step {
            Step::Call { call, .. } => Some(call),
            _ => None,
        });
        let mut keys = self.prepare(calls)?;
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Call { call, resp3 } => {
                    let expect = expected(call, &keys);
                    let reply = self.send(*resp3, &call.cmd())?;
                    let encoding = Encoding {
                        maps: *resp3,
                        script: false,
                    };
                    let seen = check(call, &expect, &reply, encoding).map_err(|e| {
                        let protocol = if *resp3 { "RESP3" } else { "RESP2" };
                        format!("step {i}, {call:?} over {protocol}: {e}")
                    })?;
                    self.tally(call, &seen);
                    apply(&mut keys, call, &expect, &seen);
                }
                Step::ClockOffset(raw) => {
                    let from = self.offset;
                    self.set_offset(raw)
                        .and_then(|()| self.clock_moved(&mut keys, from))
                        .map_err(|e| format!("step {i}: {e}"))?;
                }
                Step::GetKeys(call) => self
                    .get_keys(call)
                    .map_err(|e| format!("step {i}, COMMAND GETKEYS {call:?}: {e}"))?,
            }
        }
        self.finish(&keys)
    }

    /// `COMMAND GETKEYS <call>`: the keys are arguments of the call, or an ERR.
    fn get_keys(&mut self, call: &Call) -> Result<(), String> {
        let mut cmd = Cmd::new();
        cmd.arg("COMMAND").arg("GETKEYS").arg(&call.name[..]);
        for arg in &call.args {
            cmd.arg(&arg[..]);
        }
        match self.send(false, &cmd)? {
            Value::Array(keys) => {
                for key in &keys {
                    let Value::BulkString(key) = key else {
                        return Err(format!("a key that is not a string: {key:?}"));
                    };
                    if !call.args.contains(key) {
                        return Err(format!("{} is not an argument", show(key)));
                    }
                }
                Ok(())
            }
            reply => match error_text(&reply) {
                Some(text) if text.starts_with("ERR ") => Ok(()),
                _ => Err(format!("answered {reply:?}")),
            },
        }
    }

    /// Random calls inside one MULTI/EXEC.
    pub fn transaction_batch(&mut self, calls: &[Call], resp3: bool) -> Result<(), String> {
        let mut keys = self.prepare(calls.iter())?;
        let reply = self.query(resp3, &[b"MULTI"])?;
        if reply != Value::Okay {
            return Err(format!("MULTI answered {reply:?}"));
        }
        let mut aborted = false;
        for (i, call) in calls.iter().enumerate() {
            let reply = self.send(resp3, &call.cmd())?;
            if call.command.server_rejects_arity(call.args.len()) {
                aborted = true;
                let text = error_text(&reply).unwrap_or_default();
                if !Failure::Arity.matches(&text, call.command, false) {
                    return Err(format!(
                        "queuing {i}, {call:?}: expected the arity error, got {reply:?}"
                    ));
                }
            } else if text_of(&reply).as_deref() != Some("QUEUED") {
                return Err(format!(
                    "queuing {i}, {call:?}: expected QUEUED, got {reply:?}"
                ));
            }
        }
        let exec = self.query(resp3, &[b"EXEC"])?;
        if aborted {
            return match error_text(&exec) {
                Some(text) if text.starts_with("EXECABORT ") => self.finish(&keys),
                _ => Err(format!("EXEC after a refused command answered {exec:?}")),
            };
        }
        let Value::Array(replies) = exec else {
            return Err(format!("EXEC answered {exec:?}"));
        };
        if replies.len() != calls.len() {
            return Err(format!(
                "EXEC answered {} replies to {} calls",
                replies.len(),
                calls.len()
            ));
        }
        let encoding = Encoding {
            maps: resp3,
            script: false,
        };
        for (i, (call, reply)) in calls.iter().zip(&replies).enumerate() {
            let expect = expected(call, &keys);
            let seen = check(call, &expect, reply, encoding)
                .map_err(|e| format!("EXEC reply {i}, {call:?} (RESP3: {resp3}): {e}"))?;
            self.tally(call, &seen);
            apply(&mut keys, call, &expect, &seen);
        }
        self.finish(&keys)
    }

    /// Random calls, each through `EVAL "return redis.pcall(unpack(ARGV))"`, the script
    /// speaking RESP2 or (`redis.setresp(3)`) RESP3.
    pub fn script_batch(
        &mut self,
        calls: &[Call],
        resp3: bool,
        setresp3: bool,
    ) -> Result<(), String> {
        let mut keys = self.prepare(calls.iter())?;
        let body: &[u8] = if setresp3 {
            b"redis.setresp(3); return redis.pcall(unpack(ARGV))"
        } else {
            b"return redis.pcall(unpack(ARGV))"
        };
        // A script's RESP3 maps reach a RESP2 client as flat arrays and its booleans
        // differently: only read maps where both sides speak RESP3.
        let encoding = Encoding {
            maps: resp3 && setresp3,
            script: true,
        };
        for (i, call) in calls.iter().enumerate() {
            let mut cmd = Cmd::new();
            cmd.arg("EVAL").arg(body).arg(0).arg(&call.name[..]);
            for arg in &call.args {
                cmd.arg(&arg[..]);
            }
            let reply = self.send(resp3, &cmd)?;
            let expect = expected(call, &keys);
            let seen = check(call, &expect, &reply, encoding).map_err(|e| {
                format!(
                    "script call {i}, {call:?} (RESP3 client: {resp3}, setresp(3): {setresp3}): {e}"
                )
            })?;
            self.tally(call, &seen);
            apply(&mut keys, call, &expect, &seen);
        }
        self.finish(&keys)
    }
}
