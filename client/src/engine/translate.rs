//! The translation of an `RL.*` command, as this crate builds it, into the script call
//! that decides the same way (`client/lua/README.md` lists the layouts).

use super::scripts::{ScriptCall, script_key};
use redis::{Arg, Cmd};

/// The script call that decides as the `RL.*` command `cmd` would (as built by this
/// crate: `RL.TOKENBUCKET`, `RL.THROTTLE`, `RL.SLIDING`, `RL.FIXED`, `RL.ALL`,
/// `RL.ACQUIRE`, `RL.RELEASE`, `RL.RESET`, `RL.STATUS`, `RL.ADJUST`, `RL.USAGE.ADD`,
/// `RL.USAGE`), at the server's time, or at
/// `now_us` (microseconds since the epoch; tests only) when given.
///
/// # Errors
/// A command that is not one of those, or malformed: a message naming what.
pub fn translate(cmd: &Cmd, now_us: Option<u64>) -> Result<ScriptCall, String> {
    let words: Vec<&[u8]> = cmd
        .args_iter()
        .map(|arg| match arg {
            Arg::Simple(bytes) => bytes,
            Arg::Cursor => b"0".as_slice(),
        })
        .collect();
    let (name, rest) = words.split_first().ok_or("an empty command")?;
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let now = now_us.unwrap_or(0).to_string().into_bytes();
    let op = |op: &str| vec![op.as_bytes().to_vec(), now.clone()];
    let owned = |words: &[&[u8]]| words.iter().map(|w| w.to_vec()).collect::<Vec<_>>();
    let mut call = match name.as_str() {
        "RL.TOKENBUCKET" | "RL.SLIDING" | "RL.FIXED" => {
            let [key, a, b, options @ ..] = rest else {
                return Err(format!("{name} needs a key and its policy"));
            };
            let (numbers, options): (Vec<&[u8]>, &[&[u8]]) = if name == "RL.TOKENBUCKET" {
                let [c, options @ ..] = options else {
                    return Err(format!("{name} needs three policy numbers"));
                };
                (vec![*a, *b, *c], options)
            } else {
                (vec![*a, *b], options)
            };
            let options = Options::parse(options)?;
            let algorithm = match name.as_str() {
                "RL.TOKENBUCKET" => "tokenbucket",
                "RL.FIXED" => "fixed",
                _ if options.approx => "sliding-approx",
                _ => "sliding",
            };
            let mut args = op("decide");
            args.push(algorithm.as_bytes().to_vec());
            args.extend(owned(&numbers));
            args.extend(options.request());
            ScriptCall {
                keys: vec![script_key(key)],
                args,
            }
        }
        "RL.THROTTLE" => {
            let [key, burst, count, period, quantity @ ..] = rest else {
                return Err("RL.THROTTLE needs a key and its policy".into());
            };
            let quantity = quantity.first().copied().unwrap_or(b"1");
            let mut args = op("decide");
            args.push(b"throttle".to_vec());
            args.extend(owned(&[*burst, *count, *period, quantity, b"0", b"0"]));
            ScriptCall {
                keys: vec![script_key(key)],
                args,
            }
        }
        "RL.ALL" => translate_all(rest, op("all"))?,
        "RL.ADJUST" => super::adjust::translate_adjust(rest, op("adjust"))?,
        "RL.ACQUIRE" => {
            let [key, limit, lease_ms, id] = rest else {
                return Err("RL.ACQUIRE needs key limit lease_ms lease_id".into());
            };
            let mut args = op("acquire");
            args.extend(owned(&[*limit, *lease_ms, *id]));
            ScriptCall {
                keys: vec![script_key(key)],
                args,
            }
        }
        "RL.RELEASE" => {
            let [key, id] = rest else {
                return Err("RL.RELEASE needs key lease_id".into());
            };
            let mut args = op("release");
            args.push(id.to_vec());
            ScriptCall {
                keys: vec![script_key(key)],
                args,
            }
        }
        "RL.USAGE.ADD" => {
            let [key, amount, bucket_ms, buckets] = rest else {
                return Err("RL.USAGE.ADD needs key amount bucket_ms buckets".into());
            };
            let mut args = op("usage_add");
            args.extend(owned(&[*amount, *bucket_ms, *buckets]));
            ScriptCall {
                keys: vec![script_key(key)],
                args,
            }
        }
        "RL.USAGE" => {
            let [key] = rest else {
                return Err("RL.USAGE needs one key".into());
            };
            ScriptCall {
                keys: vec![script_key(key)],
                args: op("usage"),
            }
        }
        "RL.RESET" | "RL.STATUS" => {
            let mut args = op(if name == "RL.RESET" {
                "reset"
            } else {
                "status"
            });
            args.push(rest.len().to_string().into_bytes());
            ScriptCall {
                keys: rest.iter().map(|key| script_key(key)).collect(),
                args,
            }
        }
        other => return Err(format!("the script engine has no {other}")),
    };
    let originals: Vec<&[u8]> = match name.as_str() {
        "RL.ALL" => rest
            .get(1..=call.keys.len())
            .map(<[&[u8]]>::to_vec)
            .unwrap_or_default(),
        "RL.RESET" | "RL.STATUS" => rest.to_vec(),
        _ => rest.first().copied().into_iter().collect(),
    };
    let same_slot = originals.len() == call.keys.len()
        && originals
            .iter()
            .zip(&call.keys)
            .all(|(original, key)| crate::slot::of(original) == crate::slot::of(key));
    if same_slot {
        call.keys.extend(originals.iter().map(|key| key.to_vec()));
    }
    Ok(call)
}

/// `RL.ALL numkeys key... policy... [COST n | COSTS n1 ... nk] [PEEK] [MAXWAIT 0]` as
/// the script's `all` (a `MAXWAIT` above 0: one reservation across token buckets).
fn translate_all(rest: &[&[u8]], mut args: Vec<Vec<u8>>) -> Result<ScriptCall, String> {
    let (numkeys, rest) = rest.split_first().ok_or("RL.ALL needs numkeys")?;
    let numkeys: usize = std::str::from_utf8(numkeys)
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or("RL.ALL numkeys must be a number")?;
    let (keys, mut rest) = (
        rest.get(..numkeys)
            .ok_or("RL.ALL has fewer keys than numkeys")?,
        rest.get(numkeys..).unwrap_or_default(),
    );
    let mut policies = Vec::new();
    for _ in 0..numkeys {
        let Some((kind, after)) = rest.split_first() else {
            return Err("RL.ALL needs one policy per key".into());
        };
        let kind = String::from_utf8_lossy(kind).to_ascii_uppercase();
        let count = if kind == "TOKENBUCKET" { 3 } else { 2 };
        let numbers = after.get(..count).ok_or("RL.ALL policy is short")?;
        rest = after.get(count..).unwrap_or_default();
        let approx = kind == "SLIDING"
            && rest
                .first()
                .is_some_and(|word| word.eq_ignore_ascii_case(b"APPROX"));
        if approx {
            rest = rest.get(1..).unwrap_or_default();
        }
        let name: &[u8] = match kind.as_str() {
            "TOKENBUCKET" => b"tokenbucket",
            "FIXED" => b"fixed",
            "SLIDING" if approx => b"sliding-approx",
            "SLIDING" => b"sliding",
            other => return Err(format!("RL.ALL has no policy {other}")),
        };
        policies.push(name.to_vec());
        policies.extend(numbers.iter().map(|n| n.to_vec()));
        if count == 2 {
            policies.push(b"0".to_vec());
        }
    }
    let options = Options::parse_for_keys(rest, numkeys)?;
    let [cost, peek, max_wait] = options.request();
    args.push(peek);
    args.push(if options.costs.is_some() {
        b"COSTS".to_vec()
    } else {
        b"COST".to_vec()
    });
    args.push(max_wait);
    for (index, policy) in policies.chunks(4).enumerate() {
        args.extend(policy.iter().cloned());
        let own = options.costs.as_ref().and_then(|costs| costs.get(index));
        args.push(own.map_or_else(|| cost.clone(), |c| c.to_vec()));
    }
    Ok(ScriptCall {
        keys: keys.iter().map(|key| script_key(key)).collect(),
        args,
    })
}

/// `COST n`, `COSTS n1 ... nk` (`RL.ALL`), `PEEK`, `MAXWAIT ms`, `APPROX`.
#[derive(Default)]
struct Options<'a> {
    cost: Option<&'a [u8]>,
    costs: Option<Vec<&'a [u8]>>,
    peek: bool,
    max_wait: Option<&'a [u8]>,
    approx: bool,
}

impl<'a> Options<'a> {
    fn parse(words: &[&'a [u8]]) -> Result<Self, String> {
        Self::parse_for_keys(words, 0)
    }

    /// The options of a command over `numkeys` keys: `COSTS` takes one cost per key
    /// (none when `numkeys` is 0: not an `RL.ALL`).
    fn parse_for_keys(mut words: &[&'a [u8]], numkeys: usize) -> Result<Self, String> {
        let mut options = Self::default();
        while let Some((word, rest)) = words.split_first() {
            words = rest;
            let mut value = || {
                let (value, rest) = words.split_first().ok_or("an option without its value")?;
                words = rest;
                Ok::<_, String>(*value)
            };
            match word.to_ascii_uppercase().as_slice() {
                b"COST" => options.cost = Some(value()?),
                b"MAXWAIT" => options.max_wait = Some(value()?),
                b"PEEK" => options.peek = true,
                b"APPROX" => options.approx = true,
                b"COSTS" if numkeys > 0 => {
                    let costs = words.get(..numkeys).ok_or_else(|| {
                        format!(
                            "COSTS needs one cost per key ({numkeys} keys, {} costs)",
                            words.len()
                        )
                    })?;
                    words = words.get(numkeys..).unwrap_or_default();
                    options.costs = Some(costs.to_vec());
                }
                other => {
                    return Err(format!("unknown option {}", String::from_utf8_lossy(other)));
                }
            }
        }
        if options.cost.is_some() && options.costs.is_some() {
            return Err("COST and COSTS together (COSTS gives each key its own cost)".into());
        }
        Ok(options)
    }

    /// cost, peek (`1`/`0`), max_wait.
    fn request(&self) -> [Vec<u8>; 3] {
        [
            self.cost.unwrap_or(b"1").to_vec(),
            if self.peek { b"1" } else { b"0" }.to_vec(),
            self.max_wait.unwrap_or(b"0").to_vec(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cost per key, a reservation across limits and an adjustment translate; their
    /// malformed forms are refused with what is wrong.
    #[test]
    fn costs_reservations_and_adjustments_translate() {
        let all = |options: &[&str]| {
            let mut cmd = redis::cmd("RL.ALL");
            cmd.arg(2).arg("{p}:rpm").arg("{p}:tpm");
            cmd.arg("TOKENBUCKET").arg(3).arg(3).arg(60_000);
            cmd.arg("TOKENBUCKET").arg(1_000).arg(1_000).arg(60_000);
            for option in options {
                cmd.arg(*option);
            }
            translate(&cmd, None)
        };
        let reserve = all(&["MAXWAIT", "5000"]).unwrap();
        assert_eq!(reserve.args[4], b"5000");
        let costs = all(&["COSTS", "1", "900"]).unwrap();
        let words: Vec<&[u8]> = costs.args.iter().map(Vec::as_slice).collect();
        assert_eq!(words[2..5], [&b"0"[..], b"COSTS", b"0"]);
        assert_eq!((words[9], words[14]), (&b"1"[..], &b"900"[..]));
        let error = all(&["COSTS", "1"]).err().unwrap();
        assert_eq!(error, "COSTS needs one cost per key (2 keys, 1 costs)");
        let error = all(&["COST", "1", "COSTS", "1", "2"]).err().unwrap();
        assert!(error.contains("COST and COSTS together"), "{error}");
        let mut adjust = redis::cmd("RL.ADJUST");
        adjust.arg("k").arg(-5).arg("SLIDING").arg(10).arg(1_000);
        adjust.arg("APPROX").arg("SINCE").arg(300);
        let call = translate(&adjust, Some(7)).unwrap();
        let words: Vec<&[u8]> = call.args.iter().map(Vec::as_slice).collect();
        let expected: [&[u8]; 8] = [
            b"adjust",
            b"7",
            b"-5",
            b"300",
            b"sliding-approx",
            b"10",
            b"1000",
            b"0",
        ];
        assert_eq!(words, expected);
        let mut bare = redis::cmd("RL.ADJUST");
        bare.arg("k").arg(3);
        let call = translate(&bare, None).unwrap();
        assert_eq!(call.args.len(), 4, "no policy: delta and since only");
    }

    #[test]
    fn commands_become_script_calls() {
        let mut cmd = redis::cmd("RL.TOKENBUCKET");
        cmd.arg("k")
            .arg(5)
            .arg(1)
            .arg(1000)
            .arg("COST")
            .arg(2)
            .arg("PEEK");
        let call = translate(&cmd, Some(7)).unwrap();
        assert_eq!(call.keys, vec![b"{k}|rls".to_vec(), b"k".to_vec()]);
        let args: Vec<String> = call
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "decide",
                "7",
                "tokenbucket",
                "5",
                "1",
                "1000",
                "2",
                "1",
                "0"
            ]
        );
        let mut all = redis::cmd("RL.ALL");
        all.arg(2).arg("{u}a").arg("{u}b");
        all.arg("SLIDING").arg(3).arg(100).arg("APPROX");
        all.arg("TOKENBUCKET")
            .arg(1)
            .arg(2)
            .arg(3)
            .arg("COST")
            .arg(4);
        let call = translate(&all, None).unwrap();
        let args: Vec<String> = call
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "all",
                "0",
                "0",
                "COST",
                "0",
                "sliding-approx",
                "3",
                "100",
                "0",
                "4",
                "tokenbucket",
                "1",
                "2",
                "3",
                "4"
            ]
        );
    }
}
