//! The script engine's wire side: the Lua source (one script, built from `client/lua/`),
//! the key namespace of its keys, and the translation of an `RL.*` command into the
//! `EVALSHA` that decides the same way on a server without the module.

use redis::{Arg, Cmd};

/// The whole script: `client/lua/*.lua` concatenated in the order of `client/lua/ORDER`.
/// Any client (the Python package too) builds it the same way, so every client loads
/// the same script under the same SHA1.
pub const SOURCE: &str = concat!(
    include_str!("../../lua/common.lua"),
    include_str!("../../lua/tokenbucket.lua"),
    include_str!("../../lua/throttle.lua"),
    include_str!("../../lua/fixed.lua"),
    include_str!("../../lua/approx.lua"),
    include_str!("../../lua/sliding.lua"),
    include_str!("../../lua/leases.lua"),
    include_str!("../../lua/main.lua"),
);

/// What the script engine appends to a key's name: its keys never meet the module's.
pub const KEY_SUFFIX: &[u8] = b"|rls";

/// The name under which the script engine keeps the limiter `key`: a separate namespace
/// (the module's keys and the scripts' keys never read each other), in the same cluster
/// slot as `key` whenever that can be (always, except for a key without a hash tag that
/// contains `}`):
///
/// - a key with a hash tag keeps it: `{user:42}:m` becomes `{user:42}:m|rls`;
/// - a key without one becomes its own hash tag: `user:42` becomes `{user:42}|rls`.
///
/// ```
/// use redlimit::scripts::script_key;
/// assert_eq!(script_key(b"{user:42}:m"), b"{user:42}:m|rls");
/// assert_eq!(script_key(b"user:42"), b"{user:42}|rls");
/// ```
#[must_use]
pub fn script_key(key: &[u8]) -> Vec<u8> {
    let mut name = Vec::with_capacity(key.len() + KEY_SUFFIX.len() + 2);
    if has_hash_tag(key) || key.is_empty() || key.contains(&b'}') {
        name.extend_from_slice(key);
    } else {
        name.push(b'{');
        name.extend_from_slice(key);
        name.push(b'}');
    }
    name.extend_from_slice(KEY_SUFFIX);
    name
}

/// Whether Redis Cluster hashes `key` on a hash tag: a `{` followed later by a `}` with
/// at least one byte between them.
fn has_hash_tag(key: &[u8]) -> bool {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return false;
    };
    key.get(open + 1..)
        .and_then(|rest| rest.iter().position(|&b| b == b'}'))
        .is_some_and(|close| close > 0)
}

/// One call of the script: its keys and arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptCall {
    /// `KEYS`: the limiter keys in the script namespace, then (when every one of them
    /// shares its original's slot) the original names, which the script only checks: a
    /// value there (the module's limiter, or any other value) is `WRONGTYPE`, as the
    /// module answers for a key holding another type.
    pub keys: Vec<Vec<u8>>,
    /// `ARGV`: the operation, the time override (`0`: the server's `TIME`), the rest.
    pub args: Vec<Vec<u8>>,
}

impl ScriptCall {
    /// `EVALSHA <sha1> numkeys keys... args...`.
    #[must_use]
    pub fn evalsha(&self) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(sha1());
        self.rest(cmd)
    }

    /// `EVAL <source> numkeys keys... args...`: loads the script too (after `NOSCRIPT`).
    #[must_use]
    pub fn eval(&self) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SOURCE);
        self.rest(cmd)
    }

    fn rest(&self, mut cmd: Cmd) -> Cmd {
        cmd.arg(self.keys.len());
        for key in &self.keys {
            cmd.arg(key.as_slice());
        }
        for arg in &self.args {
            cmd.arg(arg.as_slice());
        }
        cmd
    }

    /// The cluster slot of the call (that of its first key).
    #[must_use]
    pub fn slot(&self) -> Option<u16> {
        self.keys.first().map(|key| crate::slot::of(key))
    }
}

/// The script's SHA1, as `SCRIPT LOAD` answers it.
#[must_use]
pub fn sha1() -> &'static str {
    static SHA: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SHA.get_or_init(|| redis::Script::new(SOURCE).get_hash().to_owned())
}

/// The script call that decides as the `RL.*` command `cmd` would (as built by this
/// crate: `RL.TOKENBUCKET`, `RL.THROTTLE`, `RL.SLIDING`, `RL.FIXED`, `RL.ALL`,
/// `RL.ACQUIRE`, `RL.RELEASE`, `RL.RESET`, `RL.STATUS`), at the server's time, or at
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

/// `RL.ALL numkeys key... policy... [COST n] [PEEK]` as the script's `all`.
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
    let options = Options::parse(rest)?;
    let [cost, peek, _] = options.request();
    args.push(cost);
    args.push(peek);
    args.extend(policies);
    Ok(ScriptCall {
        keys: keys.iter().map(|key| script_key(key)).collect(),
        args,
    })
}

/// `COST n`, `PEEK`, `MAXWAIT ms`, `APPROX`.
#[derive(Default)]
struct Options<'a> {
    cost: Option<&'a [u8]>,
    peek: bool,
    max_wait: Option<&'a [u8]>,
    approx: bool,
}

impl<'a> Options<'a> {
    fn parse(mut words: &[&'a [u8]]) -> Result<Self, String> {
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
                other => {
                    return Err(format!("unknown option {}", String::from_utf8_lossy(other)));
                }
            }
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

    #[test]
    fn the_script_is_the_files_in_the_order_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/lua");
        let order = std::fs::read_to_string(format!("{dir}/ORDER")).unwrap();
        let joined: String = order
            .lines()
            .map(|file| std::fs::read_to_string(format!("{dir}/{file}")).unwrap())
            .collect();
        assert_eq!(joined, SOURCE, "SOURCE must follow client/lua/ORDER");
        assert_eq!(sha1().len(), 40);
    }

    #[test]
    fn keys_keep_their_slot_in_their_own_namespace() {
        for key in [&b"user:42"[..], b"{user:42}:m", b"a{b", b"x{}y{z}"] {
            let name = script_key(key);
            assert_ne!(name, key);
            if key != b"x{}y{z}" {
                assert_eq!(crate::slot::of(&name), crate::slot::of(key), "{key:?}");
            }
        }
        assert_eq!(script_key(b"a}b"), b"a}b|rls");
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
                "4",
                "0",
                "sliding-approx",
                "3",
                "100",
                "0",
                "tokenbucket",
                "1",
                "2",
                "3"
            ]
        );
    }
}
