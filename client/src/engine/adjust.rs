//! The translation of `RL.ADJUST` into the script's `adjust` operation.

use super::scripts::{ScriptCall, script_key};

/// `RL.ADJUST key delta [policy] [SINCE ms]` as the script's `adjust`: delta, since
/// (`0` when not given), then the policy when given (name and three numbers, the third
/// `0` for two-number policies).
pub(super) fn translate_adjust(
    rest: &[&[u8]],
    mut args: Vec<Vec<u8>>,
) -> Result<ScriptCall, String> {
    let [key, delta, words @ ..] = rest else {
        return Err("RL.ADJUST needs key delta".into());
    };
    let mut words = words;
    let (mut since, mut policy) = (None, None);
    while let Some((word, after)) = words.split_first() {
        let upper = word.to_ascii_uppercase();
        if upper == b"SINCE" {
            if since.is_some() {
                return Err("RL.ADJUST: SINCE given twice".into());
            }
            let (ms, after) = after
                .split_first()
                .ok_or("SINCE needs a value (SINCE ms)")?;
            since = Some(ms.to_vec());
            words = after;
            continue;
        }
        if policy.is_some() {
            return Err(format!(
                "RL.ADJUST: syntax error near {}",
                String::from_utf8_lossy(word)
            ));
        }
        let (name, count): (&[u8], usize) = match upper.as_slice() {
            b"TOKENBUCKET" => (b"tokenbucket", 3),
            b"THROTTLE" => (b"throttle", 3),
            b"FIXED" => (b"fixed", 2),
            b"SLIDING" => (b"sliding", 2),
            _ => {
                return Err(format!(
                    "RL.ADJUST has no policy {}",
                    String::from_utf8_lossy(word)
                ));
            }
        };
        let numbers = after.get(..count).ok_or("RL.ADJUST policy is short")?;
        words = after.get(count..).unwrap_or_default();
        let approx = name == b"sliding"
            && words
                .first()
                .is_some_and(|word| word.eq_ignore_ascii_case(b"APPROX"));
        if approx {
            words = words.get(1..).unwrap_or_default();
        }
        let mut numbers: Vec<Vec<u8>> = numbers.iter().map(|n| n.to_vec()).collect();
        if count == 2 {
            numbers.push(b"0".to_vec());
        }
        let name = if approx { &b"sliding-approx"[..] } else { name };
        policy = Some((name.to_vec(), numbers));
    }
    args.push(delta.to_vec());
    args.push(since.unwrap_or_else(|| b"0".to_vec()));
    if let Some((name, numbers)) = policy {
        args.push(name);
        args.extend(numbers);
    }
    Ok(ScriptCall {
        keys: vec![script_key(key)],
        args,
    })
}
