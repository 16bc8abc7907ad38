//! The script engine's wire side: the Lua source (one script, built from `client/lua/`),
//! the key namespace of its keys, and the translation of an `RL.*` command into the
//! `EVALSHA` that decides the same way on a server without the module.

use redis::Cmd;

pub use super::translate::translate;

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
    include_str!("../../lua/adjust.lua"),
    include_str!("../../lua/reserve.lua"),
    include_str!("../../lua/usage.lua"),
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

    /// `client/lua/SHA1` is the script's SHA1: the Python package asserts the same file,
    /// so both clients load one script under one SHA1 (update the file with the Lua).
    #[test]
    fn the_sha1_file_is_the_scripts_sha1() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/lua/SHA1");
        let recorded = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            recorded.trim(),
            sha1(),
            "client/lua/SHA1 must hold the script's SHA1"
        );
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
}
