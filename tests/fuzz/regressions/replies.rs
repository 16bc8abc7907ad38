//! Syntax errors name the token; decisions are flat arrays; RL.STATUS names each field once.

use redis::Value;

use crate::commands::show;
use crate::oracle::replies::{decision_fields, error_text, pairs, text_of};
use crate::regressions::{decide, on_every_server, parts_of, words};

/// Syntax errors name what is wrong (issue 11): the unknown word (escaped, cut at 40
/// bytes), the repeated option, the option missing its value, RL.ALL's unknown policy
/// name and its missing policies; and a decision is the same array of five integers under
/// RESP2 and RESP3 (RL.ALL's `allowed` too). The module used to answer a bare
/// `ERR syntax error` and a RESP3 map.
pub fn errors_name_the_token_and_decisions_are_flat_arrays() {
    let long = "x".repeat(41);
    let cases: Vec<(Vec<&[u8]>, String)> = vec![
        (
            parts_of(&words("RL.SLIDING reg:syntax 10 1000 APROX")),
            "ERR syntax error near 'APROX'".to_owned(),
        ),
        (
            vec![b"RL.FIXED", b"reg:syntax", b"10", b"1000", b"a\xff\r\n'"],
            "ERR syntax error near 'a\\xff\\r\\n\\''".to_owned(),
        ),
        (
            vec![b"RL.FIXED", b"reg:syntax", b"10", b"1000", b"a\xff\r\n"],
            "ERR syntax error near 'a\\xff\\r\\n'".to_owned(),
        ),
        (
            vec![b"RL.FIXED", b"reg:syntax", b"10", b"1000", long.as_bytes()],
            format!("ERR syntax error near '{}...'", &long[..40]),
        ),
        (
            parts_of(&words("RL.SLIDING reg:syntax 10 1000 COST 2 cost 3")),
            "ERR syntax error: COST given twice".to_owned(),
        ),
        (
            parts_of(&words("RL.SLIDING reg:syntax 10 1000 approx APPROX")),
            "ERR syntax error: APPROX given twice".to_owned(),
        ),
        (
            parts_of(&words("RL.FIXED reg:syntax 10 1000 PEEK peek")),
            "ERR syntax error: PEEK given twice".to_owned(),
        ),
        (
            parts_of(&words("RL.SLIDING reg:syntax 10 1000 COST")),
            "ERR syntax error: COST needs a value (COST n)".to_owned(),
        ),
        (
            parts_of(&words("RL.TOKENBUCKET reg:syntax 1 1 1 MAXWAIT")),
            "ERR syntax error: MAXWAIT needs a value (MAXWAIT ms)".to_owned(),
        ),
        (
            parts_of(&words("RL.FIXED reg:syntax 10 1000 MAXWAIT 5")),
            "ERR syntax error near 'MAXWAIT'".to_owned(),
        ),
        (
            parts_of(&words("RL.ALL 2 reg:a reg:b SLIDING 10 60000")),
            "ERR RL.ALL needs one policy per key: 2 keys but 1 policies".to_owned(),
        ),
        (
            parts_of(&words("RL.ALL 3 reg:a reg:b reg:c FIXED 1 1000 cost 1")),
            "ERR RL.ALL needs one policy per key: 3 keys but 1 policies".to_owned(),
        ),
        (
            parts_of(&words("RL.ALL 2 reg:a reg:b FIXED 1 1000 FIXD 1 1000")),
            "ERR syntax error near 'FIXD' (policy 2 of 2 must be TOKENBUCKET, SLIDING or FIXED)"
                .to_owned(),
        ),
        (
            parts_of(&words("RL.ALL 1 reg:a PEEK 1")),
            "ERR syntax error near 'PEEK' (policy 1 of 1 must be TOKENBUCKET, SLIDING or FIXED)"
                .to_owned(),
        ),
    ];
    on_every_server(|t| {
        let mut violations = Vec::new();
        for (call, error) in &cases {
            for resp3 in [false, true] {
                let reply = t.query(resp3, call)?;
                if error_text(&reply).as_deref() != Some(error.as_str()) {
                    let shown: Vec<String> = call.iter().map(|p| show(p)).collect();
                    violations.push(format!(
                        "{} (RESP3: {resp3}): expected {error:?}, got {reply:?}",
                        shown.join(" ")
                    ));
                }
            }
        }
        for resp3 in [false, true] {
            let call = words("RL.FIXED reg:flat 10 100000");
            let reply = t.query(resp3, &parts_of(&call))?;
            if !matches!(decision_fields(&reply), Ok([1, 10, _, 0, _])) {
                violations.push(format!("{call:?} (RESP3: {resp3}) answered {reply:?}"));
            }
            let call = words("RL.ALL 2 reg:flat reg:flat2 FIXED 10 100000 SLIDING 5 1000");
            let reply = t.query(resp3, &parts_of(&call))?;
            let flat = match &reply {
                Value::Array(items) if items.len() == 3 && items[0] == Value::Int(1) => items[1..]
                    .iter()
                    .all(|item| matches!(decision_fields(item), Ok([1, ..]))),
                _ => false,
            };
            if !flat {
                violations.push(format!("{call:?} (RESP3: {resp3}) answered {reply:?}"));
            }
        }
        Ok(violations)
    });
}

/// RL.STATUS names every field once, in the documented order: `algorithm`, the policy, then
/// the decision fields the policy did not name already. (On window and lease keys it used to
/// name `limit` twice, the policy's and the decision's, so a RESP3 map had a duplicate key:
/// 7 pairs, 6 names.)
pub fn status_names_each_field_once() {
    const WINDOW: &[&str] = &[
        "algorithm",
        "limit",
        "window_ms",
        "allowed",
        "remaining",
        "retry_after_ms",
        "reset_after_ms",
    ];
    let cases: [(&[&str], &[&str], i64); 6] = [
        (
            &["RL.TOKENBUCKET", "reg:status-bucket", "5", "1", "100000"],
            &[
                "algorithm",
                "capacity",
                "refill_tokens",
                "refill_ms",
                "allowed",
                "limit",
                "remaining",
                "retry_after_ms",
                "reset_after_ms",
            ],
            5,
        ),
        (
            &["RL.THROTTLE", "reg:status-throttle", "4", "1", "100"],
            &[
                "algorithm",
                "max_burst",
                "count_per_period",
                "period",
                "allowed",
                "limit",
                "remaining",
                "retry_after_ms",
                "reset_after_ms",
            ],
            5,
        ),
        (&["RL.FIXED", "reg:status-fixed", "5", "100000"], WINDOW, 5),
        (
            &["RL.SLIDING", "reg:status-sliding", "6", "100000"],
            WINDOW,
            6,
        ),
        (
            &["RL.SLIDING", "reg:status-approx", "7", "100000", "APPROX"],
            WINDOW,
            7,
        ),
        (
            &["RL.ACQUIRE", "reg:status-leases", "8", "100000", "job"],
            &[
                "algorithm",
                "limit",
                "lease_ms",
                "allowed",
                "remaining",
                "retry_after_ms",
                "reset_after_ms",
            ],
            8,
        ),
    ];
    on_every_server(|t| {
        let mut violations = Vec::new();
        for (call, names, limit) in cases {
            decide(t, call)?;
            let key = call[1].as_bytes();
            for resp3 in [false, true] {
                let status = t.query(resp3, &[b"RL.STATUS", key])?;
                let got: Vec<String> = match (&status, resp3) {
                    (Value::Map(fields), true) => fields
                        .iter()
                        .map(|(k, _)| text_of(k).unwrap_or_default())
                        .collect(),
                    (Value::Array(items), false) => items
                        .iter()
                        .step_by(2)
                        .map(|k| text_of(k).unwrap_or_default())
                        .collect(),
                    _ => {
                        violations.push(format!("RL.STATUS {} answered {status:?}", call[1]));
                        continue;
                    }
                };
                if got != names {
                    violations.push(format!(
                        "{call:?} then RL.STATUS {} (RESP3: {resp3}): expected the fields {names:?}, got {got:?}",
                        call[1]
                    ));
                    continue;
                }
                let fields = pairs(&status, resp3)?;
                if fields.get("limit") != Some(&Value::Int(limit)) {
                    violations.push(format!(
                        "RL.STATUS {} (RESP3: {resp3}): expected limit {limit}, got {status:?}",
                        call[1]
                    ));
                }
                // The map's announced length matches what followed it: the connection still
                // reads replies in step.
                let pong = t.query(resp3, &[b"PING"])?;
                if text_of(&pong).as_deref() != Some("PONG") {
                    violations.push(format!(
                        "after RL.STATUS {} (RESP3: {resp3}), PING answered {pong:?}",
                        call[1]
                    ));
                }
            }
        }
        Ok(violations)
    });
}
