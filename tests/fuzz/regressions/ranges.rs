//! Values beyond the documented ranges are refused, never saturated.

use redis::Value;
use redlimit_core::{FixedWindow, Limiter};

use crate::commands::{bytes, show};
use crate::oracle::replies::{decision_fields, error_text};
use crate::regressions::{decide, on_every_server, parts_of, server_ms, status_field, words};
use crate::strategies::limiters::{hand_state, varints, wall_micros};

/// When a limiter taken at the bounds is full again.
#[derive(Clone, Copy)]
pub enum Reset {
    /// This many ms after the call.
    After(i64),
    /// A lease of this many ms: it expires at the call's time rounded up to the next ms,
    /// plus the lease (never short), so `reset_after_ms` is the lease or 1 ms more.
    Lease(i64),
    /// At this Unix time in ms (the end of an epoch-aligned window).
    At(i64),
}

/// "Values too large to compute exactly are rejected with an error, never wrapped or
/// saturated silently" (spec, Errors): every duration is at most 10^13 ms, every count at
/// most 2^62, and the per-algorithm bounds hold (`docs/commands.md`, Ranges). A larger value
/// is the error that gives the bound, writes nothing, and is not a state RL.SETSTATE takes;
/// a value at the bound is taken and replied exactly. (The module used to take any RL.FIXED
/// limit and window, any RL.SLIDING window and any refill_tokens, and saturated the replies
/// at `i64::MAX`.)
pub fn huge_limits_and_windows_are_refused_not_saturated() {
    const WINDOW: &str = "ERR window_ms must be at most 10000000000000";
    const COUNT_LIMIT: &str = "ERR limit must be at most 4611686018427387904";
    const REFILL_TOKENS: &str = "ERR refill_tokens must be at most 4611686018427387904";
    const REFILL_MS: &str = "ERR refill_ms must be at most 10000000000000";
    const APPROX_LIMIT: &str = "ERR limit must be at most 1099511627776";
    const APPROX_WINDOW: &str = "ERR window_ms must be at most 1099511627776";
    const COST: &str = "ERR COST must be at most 4611686018427387904";
    let refused: &[(&str, &str)] = &[
        ("RL.FIXED reg:fixed 18446744073709551615 1000", COUNT_LIMIT),
        ("RL.FIXED reg:fixed 4611686018427387905 1000", COUNT_LIMIT),
        ("RL.FIXED reg:fixed 10 18446744073709551615", WINDOW),
        ("RL.FIXED reg:fixed 10 9223372036854775807", WINDOW),
        ("RL.FIXED reg:fixed 10 10000000000001", WINDOW),
        ("RL.SLIDING reg:sliding 10 18446744073709551615", WINDOW),
        ("RL.SLIDING reg:sliding 10 10000000000001", WINDOW),
        (
            "RL.SLIDING reg:sliding 65537 1000",
            "ERR limit must be at most 65536 for an exact log (use APPROX above)",
        ),
        (
            "RL.SLIDING reg:approx 1099511627777 1000 APPROX",
            APPROX_LIMIT,
        ),
        (
            "RL.SLIDING reg:approx 10 1099511627777 APPROX",
            APPROX_WINDOW,
        ),
        (
            "RL.TOKENBUCKET reg:bucket 5 18446744073709551615 1000",
            REFILL_TOKENS,
        ),
        (
            "RL.TOKENBUCKET reg:bucket 5 4611686018427387905 1000",
            REFILL_TOKENS,
        ),
        ("RL.TOKENBUCKET reg:bucket 1 1 10000000000001", REFILL_MS),
        (
            "RL.TOKENBUCKET reg:bucket 4611686018427388 1 1",
            "ERR capacity must be at most 4611686018427387 when refill_ms is 1",
        ),
        (
            "RL.TOKENBUCKET reg:bucket 462 1 10000000000000",
            "ERR capacity must be at most 461 when refill_ms is 10000000000000",
        ),
        (
            "RL.TOKENBUCKET reg:bucket 1 1 1 MAXWAIT 4611686018427388",
            "ERR MAXWAIT must be at most 10000000000000",
        ),
        (
            "RL.ACQUIRE reg:leases 1 10000000000001 job",
            "ERR lease_ms must be at most 10000000000000",
        ),
        (
            "RL.ACQUIRE reg:leases 1001 1000 job",
            "ERR limit must be at most 1000",
        ),
        ("RL.ALL 1 reg:all FIXED 10 10000000000001", WINDOW),
        (
            "RL.ALL 1 reg:all FIXED 4611686018427387905 1000",
            COUNT_LIMIT,
        ),
        ("RL.ALL 1 reg:all SLIDING 10 10000000000001", WINDOW),
        (
            "RL.ALL 1 reg:all SLIDING 10 1099511627777 APPROX",
            APPROX_WINDOW,
        ),
        (
            "RL.ALL 1 reg:all TOKENBUCKET 5 18446744073709551615 1000",
            REFILL_TOKENS,
        ),
        ("RL.ALL 1 reg:all TOKENBUCKET 1 1 10000000000001", REFILL_MS),
        // Beyond u64: the argument's own bound, not the parser's.
        ("RL.SLIDING reg:sliding 10 99999999999999999999", WINDOW),
        ("RL.FIXED reg:fixed 99999999999999999999 1000", COUNT_LIMIT),
        ("RL.ALL 1 reg:all FIXED 10 99999999999999999999", WINDOW),
        (
            "RL.TOKENBUCKET reg:bucket 99999999999999999999 1 1000",
            "ERR capacity must be at most 4611686018427 when refill_ms is 1000",
        ),
        (
            "RL.TOKENBUCKET reg:bucket 1 1 1 MAXWAIT 99999999999999999999",
            "ERR MAXWAIT must be at most 10000000000000",
        ),
        (
            "RL.ACQUIRE reg:leases 99999999999999999999 1000 job",
            "ERR limit must be at most 1000",
        ),
        // Costs and quantities are counts: at most 2^62.
        ("RL.FIXED reg:fixed 10 1000 COST 4611686018427387905", COST),
        ("RL.FIXED reg:fixed 10 1000 COST 18446744073709551615", COST),
        (
            "RL.SLIDING reg:sliding 10 1000 COST 99999999999999999999",
            COST,
        ),
        (
            "RL.ALL 1 reg:all FIXED 10 1000 COST 4611686018427387905",
            COST,
        ),
        (
            "RL.THROTTLE reg:throttle 1 1 1 4611686018427387905",
            "ERR quantity must be at most 4611686018427387904",
        ),
        (
            "RL.THROTTLE reg:throttle 1 1 99999999999999999999",
            "ERR period_s must be at most 9223372036",
        ),
        (
            "RL.THROTTLE reg:throttle 1 1 0",
            "ERR period_s must be a positive integer",
        ),
    ];
    let duration = 10_000_000_000_000;
    let approx_window = 1 << 40;
    let max_count = 1 << 62;
    // The APPROX window now is [k * 2^40, (k + 1) * 2^40); a count in it weighs until the
    // end of the next one.
    let now_ms = i64::try_from(wall_micros() / 1_000).unwrap_or(i64::MAX);
    let approx_end = (now_ms / approx_window + 2) * approx_window;
    // At the bounds: taken, every number replied as it is: [allowed, limit, remaining,
    // retry_after_ms], and reset_after_ms.
    let at_bounds: &[(&str, [i64; 4], Reset)] = &[
        (
            "RL.FIXED reg:fixed-max 4611686018427387904 10000000000000",
            [1, max_count, max_count - 1, 0],
            // The first window, [0, 10^13), ends in 2286.
            Reset::At(duration),
        ),
        (
            "RL.SLIDING reg:sliding-max 65536 10000000000000",
            [1, 1 << 16, (1 << 16) - 1, 0],
            Reset::After(duration),
        ),
        (
            "RL.SLIDING reg:approx-max 1099511627776 1099511627776 APPROX",
            [1, approx_window, approx_window - 1, 0],
            Reset::At(approx_end),
        ),
        (
            "RL.TOKENBUCKET reg:bucket-slow 461 1 10000000000000",
            [1, 461, 460, 0],
            Reset::After(duration),
        ),
        (
            "RL.TOKENBUCKET reg:bucket-fast 1 4611686018427387904 1",
            [1, 1, 0, 0],
            Reset::After(1),
        ),
        (
            // One token borrowed, repaid in 1 ms; the bucket is full 1 ms later.
            "RL.TOKENBUCKET reg:bucket-wait 1 1 1 COST 2 MAXWAIT 10000000000000",
            [1, 1, 0, 1],
            Reset::After(2),
        ),
        (
            "RL.ACQUIRE reg:leases-max 1000 10000000000000 job",
            [1, 1_000, 999, 0],
            Reset::Lease(duration),
        ),
    ];
    // The hand-written states are the encoding's.
    let fixed = FixedWindow::new(10, 1_000).expect("a valid window");
    let count = redlimit_core::WindowCount {
        end_ms: 5_000,
        count: 2,
    };
    assert_eq!(
        hand_state(3, &[10, 1_000, 5_000, 2]),
        Limiter::Fixed(fixed, count).encode()
    );
    on_every_server(|t| {
        let mut violations = Vec::new();
        for &(line, error) in refused {
            let call = words(line);
            let key = if call[0] == "RL.ALL" {
                call[2]
            } else {
                call[1]
            };
            t.ok(&[b"DEL", key.as_bytes()])?;
            for resp3 in [false, true] {
                let reply = t.query(resp3, &parts_of(&call))?;
                if error_text(&reply).as_deref() != Some(error) {
                    violations.push(format!(
                        "{line} (RESP3: {resp3}): expected {error:?}, got {reply:?}"
                    ));
                }
            }
            if t.ok(&[b"EXISTS", key.as_bytes()])? != Value::Int(0) {
                violations.push(format!("{line} was refused, yet {key} exists"));
            }
        }

        for &(line, want, reset) in at_bounds {
            let before = server_ms(t)?;
            let got = decide(t, &words(line))?;
            let after = server_ms(t)?;
            let (least, most) = match reset {
                Reset::After(ms) => (ms, ms),
                Reset::Lease(ms) => (ms, ms + 1),
                Reset::At(at) => (at - after, at - before),
            };
            if got[..4] != want || !(least..=most).contains(&got[4]) {
                violations.push(format!(
                    "{line}: expected {want:?} with reset_after_ms in {least}..={most}, got {got:?}"
                ));
            }
        }
        let line = "RL.ALL 1 reg:all-max FIXED 4611686018427387904 10000000000000";
        let all = t.query(false, &parts_of(&words(line)))?;
        let all_fields = match &all {
            Value::Array(items) if items.len() == 2 && items[0] == Value::Int(1) => {
                decision_fields(&items[1]).ok()
            }
            _ => None,
        };
        if all_fields.is_none_or(|f| f[..4] != [1, max_count, max_count - 1, 0]) {
            violations.push(format!("{line}: answered {all:?}"));
        }

        // States: beyond the bounds refused, at the bounds stored and reported exactly.
        let now_us = t.server_micros()?;
        let max_count = max_count.unsigned_abs();
        let duration = duration.unsigned_abs();
        let beyond = [
            (
                "fixed limit 2^62 + 1",
                hand_state(3, &[max_count + 1, 1_000, duration, 0]),
            ),
            (
                "fixed window_ms 10^13 + 1",
                hand_state(3, &[10, duration + 1, duration, 0]),
            ),
            (
                "sliding window_ms 10^13 + 1",
                hand_state(4, &[10, duration + 1, 0]),
            ),
            (
                "approx window_ms 2^40 + 1",
                hand_state(5, &[10, (1 << 40) + 1, 0, 0, 0]),
            ),
            (
                "bucket refill_tokens 2^62 + 1",
                hand_state(1, &[5, max_count + 1, 1_000, 0, now_us]),
            ),
            (
                "bucket refill_ms 10^13 + 1",
                hand_state(1, &[1, 1, duration + 1, 0, now_us]),
            ),
            (
                "leases lease_ms 10^13 + 1",
                hand_state(6, &[1, duration + 1, 0]),
            ),
        ];
        for (what, state) in beyond {
            let reply = t.query(false, &[b"RL.SETSTATE", b"reg:state", &state])?;
            let refused = error_text(&reply)
                .is_some_and(|e| e.starts_with("ERR state must be a redlimit state"));
            if !refused {
                violations.push(format!(
                    "RL.SETSTATE with a {what}: expected ERR state must be a redlimit state, got {reply:?}"
                ));
            }
        }
        if t.ok(&[b"EXISTS", b"reg:state"])? != Value::Int(0) {
            violations.push("refused states created reg:state".to_owned());
        }
        let stored = [
            (
                "reg:state-fixed",
                hand_state(3, &[max_count, duration, duration, 1]),
                [
                    ("limit", max_count),
                    ("window_ms", duration),
                    ("remaining", max_count - 2),
                ],
            ),
            (
                "reg:state-bucket",
                // One token missing, back in 10^13 ms.
                hand_state(1, &[461, 1, duration, duration * 1_000, now_us]),
                [
                    ("capacity", 461),
                    ("refill_ms", duration),
                    ("remaining", 459),
                ],
            ),
        ];
        for (key, state, fields) in stored {
            let reply = t.query(false, &[b"RL.SETSTATE", key.as_bytes(), &state])?;
            if reply != Value::Okay {
                violations.push(format!(
                    "RL.SETSTATE {key} at the bounds answered {reply:?}"
                ));
                continue;
            }
            let status = t.query(false, &[b"RL.STATUS", key.as_bytes()])?;
            for (name, value) in fields {
                if status_field(&status, name).and_then(|n| u64::try_from(n).ok()) != Some(value) {
                    violations.push(format!(
                        "RL.STATUS {key} after a state at the bounds: expected {name} {value}, got {status:?}"
                    ));
                }
            }
        }
        Ok(violations)
    });
}

/// "Values too large to compute exactly are rejected with an error, never wrapped or
/// saturated silently" (spec, Errors). RL.SETSTATE used to take a sliding, APPROX or lease
/// state whose stored time is `u64::MAX` ms, whose decisions then answered
/// `retry_after_ms`/`reset_after_ms` saturated at `i64::MAX` (found by the `states`
/// property, seed 20261123, 2048 cases). States with times past 10^14 ms are refused now.
pub fn far_future_states_are_refused() {
    let far = u64::MAX;
    let cases = [
        // An exact log of limit 1 whose one entry (cost 1) is at u64::MAX ms.
        (
            "reg:far-sliding",
            [hand_state(4, &[1, 1_000, far]), varints(&[0, 1])].concat(),
        ),
        // An APPROX window of limit 1 starting at u64::MAX ms, holding 1.
        ("reg:far-approx", hand_state(5, &[1, 1_000, far, 0, 1])),
        // One lease ("a") of a limit of 1, expiring at u64::MAX ms.
        (
            "reg:far-leases",
            [
                hand_state(6, &[1, 1_000, 1]),
                varints(&[far, 1]),
                bytes("a"),
            ]
            .concat(),
        ),
    ];
    on_every_server(|t| {
        let mut violations = Vec::new();
        for (key, state) in &cases {
            let reply = t.query(false, &[b"RL.SETSTATE", key.as_bytes(), state])?;
            if error_text(&reply).is_some_and(|e| {
                e == "ERR state must be a redlimit state (a time beyond the year 5000)"
            }) {
                continue;
            }
            violations.push(format!(
                "RL.SETSTATE {key} {} answered {reply:?}, not the refusal",
                show(state)
            ));
        }
        Ok(violations)
    });
}
