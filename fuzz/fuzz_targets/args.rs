//! The module's argument parsers (`module/src/args.rs`, `module/src/commands/options.rs`,
//! compiled unchanged) on arbitrary argument bytes, against a reference model: strict
//! base-10 integers, options in any order and case, each at most once; every error reply
//! free of CR/LF.
//!
//! Input: one byte of accepted options (bits: COST, PEEK, MAXWAIT, APPROX), then the
//! arguments separated by NUL bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redlimit_core::{Concurrency, MAX_COUNT, MAX_LEASE_ID_LEN, Request};
use redlimit_fuzz::args::{Args, integer, positive};
use redlimit_fuzz::error::CommandError;
use redlimit_fuzz::ffi;
use redlimit_fuzz::options::{self, Flag};

const FLAGS: [(Flag, &[u8]); 4] = [
    (Flag::Cost, b"COST"),
    (Flag::Peek, b"PEEK"),
    (Flag::MaxWait, b"MAXWAIT"),
    (Flag::Approx, b"APPROX"),
];

/// The integer a strict base-10 argument means (saturated), or `None`.
fn reference_integer(bytes: &[u8]) -> Option<u64> {
    let (negative, digits) = match bytes.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let significant = digits
        .iter()
        .position(|&d| d != b'0')
        .map_or(&[][..], |start| &digits[start..]);
    if negative && !significant.is_empty() {
        return None;
    }
    if significant.len() > 20 {
        return Some(u64::MAX);
    }
    let text = std::str::from_utf8(significant).ok()?;
    Some(
        text.parse::<u128>()
            .map_or(0, |n| u64::try_from(n).unwrap_or(u64::MAX)),
    )
}

/// What `options::parse` should answer: `(cost, peek, max_wait, approx)` or an error.
fn reference_options(words: &[&[u8]], accepted: &[Flag]) -> Option<(u64, bool, u64, bool)> {
    let (mut cost, mut peek, mut max_wait, mut approx) = (1, false, 0, false);
    let mut seen = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let &(flag, _) = FLAGS
            .iter()
            .find(|(flag, name)| accepted.contains(flag) && word.eq_ignore_ascii_case(name))?;
        if seen.contains(&flag) {
            return None;
        }
        seen.push(flag);
        match flag {
            Flag::Cost => cost = reference_integer(words.next()?).filter(|&n| n <= MAX_COUNT)?,
            Flag::MaxWait => max_wait = reference_integer(words.next()?)?,
            Flag::Peek => peek = true,
            Flag::Approx => approx = true,
            // RL.ALL's `COSTS` is not among the flags this target offers.
            Flag::Costs => return None,
        }
    }
    Some((cost, peek, max_wait, approx))
}

/// An error reply is one line: no CR or LF, and bounded.
fn check_reply(error: &CommandError) {
    let text = error.reply_text("rl.fuzz");
    assert!(!text.contains(['\r', '\n']), "reply with CR/LF: {text:?}");
    assert!(text.len() <= 200, "reply of {} bytes", text.len());
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&mask, rest)) = bytes.split_first() else {
        return;
    };
    let words: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    for word in &words {
        let expected = reference_integer(word);
        match integer("n", word) {
            Ok(n) => assert_eq!(Some(n), expected, "integer {word:?}"),
            Err(error) => {
                assert_eq!(expected, None, "integer {word:?}");
                check_reply(&error);
            }
        }
        match positive("n", word) {
            Ok(n) => assert_eq!(Some(n), expected.filter(|&n| n > 0), "positive {word:?}"),
            Err(error) => {
                assert!(expected.is_none_or(|n| n == 0), "positive {word:?}");
                check_reply(&error);
            }
        }
        let id = Concurrency::check_lease_id(word);
        assert_eq!(id.is_ok(), word.len() <= MAX_LEASE_ID_LEN);
    }
    let accepted: Vec<Flag> = FLAGS
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, &(flag, _))| flag)
        .collect();
    let argv = ffi::argv(b"RL.FUZZ", &words);
    let min = usize::from(mask >> 4);
    match Args::new(&argv, min, min + 8) {
        Ok(_) => assert!((min..=min + 8).contains(&words.len())),
        Err(error) => {
            assert!(!(min..=min + 8).contains(&words.len()));
            check_reply(&error);
        }
    }
    let Ok(mut args) = Args::new(&argv, 0, usize::MAX) else {
        unreachable!("any count is accepted");
    };
    match options::parse(&mut args, &accepted) {
        Ok(parsed) => {
            let Request {
                cost,
                peek,
                max_wait_ms,
            } = parsed.request;
            assert_eq!(
                Some((cost, peek, max_wait_ms, parsed.approx)),
                reference_options(&words, &accepted),
                "options {words:?}"
            );
        }
        Err(error) => {
            assert_eq!(
                reference_options(&words, &accepted),
                None,
                "options {words:?}"
            );
            check_reply(&error);
        }
    }
});
