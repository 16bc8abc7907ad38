//! Retry and reset after the clock moved back include the wait for the clock.

use redis::Value;

use crate::commands::decimal;
use crate::oracle::replies::{decision_fields, error_text};
use crate::regressions::{decide, on_every_server, parts_of, server_ms, status_field};

/// A limiter written with the clock ahead, then called with the clock moved back.
struct BackCase {
    /// The call that writes (clock ahead).
    pub write: &'static [&'static str],
    /// The call that is then denied (clock back); it takes `PEEK` where `peeks`.
    pub check: &'static [&'static str],
    pub peeks: bool,
    /// Milliseconds per unit of the reply (redis-cell's seconds for RL.THROTTLE).
    pub unit: i64,
    /// Besides the wait for the clock, `retry_after` and `reset_after` are within this
    /// (milliseconds).
    wait: (i64, i64),
}

/// After the clock moves back (a lower `redlimit.clock-offset-ms`, an NTP step, a failover
/// to a server behind), a state written at the later clock admits nothing until the clock
/// is back at the state's time, and `retry_after` and `reset_after` say so: they are the
/// wait for the clock plus what the state itself asks, and a retry at that moment succeeds.
/// (RL.TOKENBUCKET, retry and reset, and RL.SLIDING APPROX, retry, used to leave out the wait
/// for the clock and told the client to retry ~10^8 ms too early.)
pub fn retry_and_reset_after_a_clock_moved_back_include_the_wait_for_the_clock() {
    let cases = [
        BackCase {
            write: &["RL.TOKENBUCKET", "reg:back-bucket", "1", "1", "1000"],
            check: &["RL.TOKENBUCKET", "reg:back-bucket", "1", "1", "1000"],
            peeks: true,
            unit: 1,
            // The token taken refills in 1 s from the state's time.
            wait: (1_000, 1_000),
        },
        BackCase {
            write: &["RL.SLIDING", "reg:back-approx", "1", "1000", "APPROX"],
            check: &["RL.SLIDING", "reg:back-approx", "1", "1000", "APPROX"],
            peeks: true,
            unit: 1,
            // The count weighs until the end of the window after the one it is in.
            wait: (1_000, 2_000),
        },
        BackCase {
            write: &["RL.SLIDING", "reg:back-sliding", "1", "1000"],
            check: &["RL.SLIDING", "reg:back-sliding", "1", "1000"],
            peeks: true,
            unit: 1,
            wait: (1_000, 1_000),
        },
        BackCase {
            write: &["RL.FIXED", "reg:back-fixed", "1", "1000"],
            check: &["RL.FIXED", "reg:back-fixed", "1", "1000"],
            peeks: true,
            unit: 1,
            wait: (0, 1_000),
        },
        BackCase {
            write: &["RL.ACQUIRE", "reg:back-leases", "1", "1000", "job-1"],
            check: &["RL.ACQUIRE", "reg:back-leases", "1", "1000", "job-2"],
            peeks: false,
            unit: 1,
            wait: (1_000, 1_000),
        },
        BackCase {
            write: &["RL.THROTTLE", "reg:back-throttle", "0", "1", "1"],
            check: &["RL.THROTTLE", "reg:back-throttle", "0", "1", "1"],
            peeks: false,
            unit: 1_000,
            wait: (1_000, 1_000),
        },
    ];
    on_every_server(|t| {
        let back_ms: i64 = 100_000_000;
        let back = decimal(back_ms);
        // Everything in one transaction: where the server freezes time for it, the clock
        // is exactly `back_ms` behind the writes.
        let started = server_ms(t)?;
        t.ok(&[b"MULTI"])?;
        t.query(
            false,
            &[b"CONFIG", b"SET", b"redlimit.clock-offset-ms", &back],
        )?;
        for case in &cases {
            t.query(false, &parts_of(case.write))?;
        }
        t.query(
            false,
            &[b"CONFIG", b"SET", b"redlimit.clock-offset-ms", b"0"],
        )?;
        for case in &cases {
            t.query(false, &parts_of(case.check))?;
            t.query(false, &[b"RL.STATUS", case.check[1].as_bytes()])?;
        }
        let exec = t.ok(&[b"EXEC"])?;
        let elapsed = server_ms(t)? - started;
        let Value::Array(replies) = exec else {
            return Err(format!("EXEC answered {exec:?}"));
        };
        let errors: Vec<String> = replies.iter().filter_map(error_text).collect();
        if !errors.is_empty() || replies.len() != 2 + 3 * cases.len() {
            return Err(format!("EXEC answered {replies:?}"));
        }
        let written = &replies[1..=cases.len()];
        let checked = &replies[2 + cases.len()..];
        // The clock is back_ms behind the writes, less the time the transaction took where
        // the server does not freeze it.
        let lag = if t.freezes_time() {
            (back_ms, back_ms)
        } else {
            (back_ms - elapsed - 1, back_ms)
        };
        let mut violations = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let throttle = case.unit > 1;
            let wrote = decision_fields(&written[i])?;
            let fields = decision_fields(&checked[2 * i])?;
            // Allowed is 1, except for redis-cell's "limited" (0 = allowed).
            let denied = if throttle { 1 } else { 0 };
            if wrote[0] == denied || fields[0] != denied {
                violations.push(format!(
                    "{:?} with the clock {back_ms} ms ahead answered {wrote:?}, then {:?} {fields:?}: \
                     expected allowed, then denied",
                    case.write, case.check
                ));
                continue;
            }
            // redis-cell rounds to seconds: at most a second either way.
            let rounding = if throttle { 1_000 } else { 1 };
            let least = lag.0 + case.wait.0 - rounding;
            let most = lag.1 + case.wait.1 + rounding;
            let (retry, reset) = (fields[3] * case.unit, fields[4] * case.unit);
            for (name, value) in [("retry_after", retry), ("reset_after", reset)] {
                if !(least..=most).contains(&value) {
                    violations.push(format!(
                        "{:?} after the clock moved back {back_ms} ms: expected {name} within \
                         {least}..={most} ms, got {fields:?}",
                        case.check
                    ));
                }
            }
            if !throttle {
                let status = &checked[2 * i + 1];
                let status = ["retry_after_ms", "reset_after_ms"].map(|n| status_field(status, n));
                if status != [Some(fields[3]), Some(fields[4])] && t.freezes_time() {
                    violations.push(format!(
                        "RL.STATUS {} at the same instant as {:?} answered {status:?}, the call {fields:?}",
                        case.check[1], case.check
                    ));
                }
            }
        }
        if !violations.is_empty() {
            return Ok(violations);
        }
        // The waits are right, not just long enough: shortly before the retry the request is
        // still denied, 1 ms after it allowed, and 1 ms after the reset the limiter is full.
        for (i, case) in cases.iter().enumerate() {
            let fields = decision_fields(&checked[2 * i])?;
            let (retry, reset) = (fields[3] * case.unit, fields[4] * case.unit);
            let mut check = case.check.to_vec();
            if case.peeks {
                check.push("PEEK");
            }
            let early = if case.unit > 1 { 1_500 } else { 500 };
            let allowed = |f: [i64; 5]| f[0] == i64::from(case.unit == 1);
            t.move_clock(retry - early)?;
            let before_retry = decide(t, &check)?;
            t.move_clock(retry + 1)?;
            let at_retry = decide(t, &check)?;
            if allowed(before_retry) || !allowed(at_retry) {
                violations.push(format!(
                    "{check:?} with retry_after {retry} ms: {early} ms before it answered \
                     {before_retry:?}, 1 ms after it {at_retry:?}"
                ));
            }
            if case.peeks {
                t.move_clock(reset + 1)?;
                let at_reset = decide(t, &check)?;
                if !allowed(at_reset) || at_reset[2] != at_reset[1] - 1 {
                    violations.push(format!(
                        "{check:?} with reset_after {reset} ms: 1 ms after it answered \
                         {at_reset:?}, expected a full limiter"
                    ));
                }
            }
            t.move_clock(0)?;
        }
        Ok(violations)
    });
}
