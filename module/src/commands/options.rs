//! The request options shared by the limiting commands: `COST n`, `PEEK`, `MAXWAIT ms`,
//! `APPROX`, and `RL.ALL`'s `COSTS n1 … nk`, in any order, each at most once, keywords
//! in any case.

use crate::args::{Args, integer};
use crate::error::CommandError;
use redlimit_core::Request;

/// An option a command accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `COST n`.
    Cost,
    /// `PEEK`.
    Peek,
    /// `MAXWAIT ms`.
    MaxWait,
    /// `APPROX`.
    Approx,
    /// `COSTS n1 … nk` (`RL.ALL`: one cost per key).
    Costs,
}

impl Flag {
    /// This flag's bit in a set of seen flags.
    const fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The keyword, as the docs spell it.
    const fn name(self) -> &'static str {
        match self {
            Self::Cost => "COST",
            Self::Peek => "PEEK",
            Self::MaxWait => "MAXWAIT",
            Self::Approx => "APPROX",
            Self::Costs => "COSTS",
        }
    }

    fn keyword(self) -> &'static [u8] {
        self.name().as_bytes()
    }

    /// What the value after the keyword is called in `COMMAND DOCS`.
    const fn value_name(self) -> &'static str {
        match self {
            Self::Cost => "n",
            Self::MaxWait => "ms",
            Self::Costs => "n1 ... nk",
            Self::Peek | Self::Approx => "",
        }
    }
}

/// The options of one call.
#[derive(Default)]
pub struct Options {
    /// Cost, peek and max wait.
    pub request: Request,
    /// `APPROX` was given.
    pub approx: bool,
    /// `COSTS` was given: one cost per key.
    pub costs: Option<Vec<u64>>,
}

/// Reads the options left in `args`, accepting only `accepted`.
pub fn parse(args: &mut Args<'_>, accepted: &[Flag]) -> Result<Options, CommandError> {
    parse_for_keys(args, accepted, 0)
}

/// Reads the options left in `args`, accepting only `accepted`; `COSTS` takes `numkeys`
/// values and excludes `COST`.
pub fn parse_for_keys(
    args: &mut Args<'_>,
    accepted: &[Flag],
    numkeys: usize,
) -> Result<Options, CommandError> {
    let mut options = Options::default();
    let mut seen = 0u8;
    while let Some(word) = args.next_bytes() {
        let flag = accepted
            .iter()
            .copied()
            .find(|flag| is_keyword(word, flag.keyword()))
            .ok_or_else(|| CommandError::syntax_near(word))?;
        if seen & flag.bit() != 0 {
            return Err(CommandError::Syntax(format!(
                ": {} given twice",
                flag.name()
            )));
        }
        seen |= flag.bit();
        match flag {
            Flag::Cost => {
                options.request.cost = Request::check_cost("COST", value(args, flag)?)?;
            }
            Flag::Peek => options.request.peek = true,
            Flag::MaxWait => options.request.max_wait_ms = value(args, flag)?,
            Flag::Approx => options.approx = true,
            Flag::Costs => {
                let mut costs = Vec::with_capacity(numkeys);
                for _ in 0..numkeys {
                    let raw = args.next_bytes().ok_or_else(|| {
                        CommandError::Syntax(format!(
                            ": COSTS needs one cost per key ({numkeys} keys, {} costs)",
                            costs.len()
                        ))
                    })?;
                    costs.push(Request::check_cost("COSTS", integer("COSTS", raw)?)?);
                }
                options.costs = Some(costs);
            }
        }
    }
    if seen & Flag::Cost.bit() != 0 && seen & Flag::Costs.bit() != 0 {
        return Err(CommandError::Syntax(
            ": COST and COSTS together (COSTS gives each key its own cost)".to_owned(),
        ));
    }
    Ok(options)
}

/// `word` is `keyword` in any case. Every keyword is uppercase letters only, for which
/// clearing bit 5 of a byte (`a`-`z` to `A`-`Z`) is exactly case folding: a byte equals
/// an uppercase letter that way only if it is that letter in either case. One pass,
/// without `to_ascii_lowercase` on both sides.
fn is_keyword(word: &[u8], keyword: &[u8]) -> bool {
    word.len() == keyword.len()
        && word
            .iter()
            .zip(keyword)
            .all(|(&byte, &letter)| byte & !0x20 == letter)
}

/// The value after an option keyword; a missing one is a syntax error that says so.
fn value(args: &mut Args<'_>, flag: Flag) -> Result<u64, CommandError> {
    let name = flag.name();
    let raw = args.next_bytes().ok_or_else(|| {
        CommandError::Syntax(format!(
            ": {name} needs a value ({name} {})",
            flag.value_name()
        ))
    })?;
    integer(name, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_in_any_case_and_nothing_else() {
        for flag in [
            Flag::Cost,
            Flag::Peek,
            Flag::MaxWait,
            Flag::Approx,
            Flag::Costs,
        ] {
            let keyword = flag.keyword();
            assert!(
                keyword.iter().all(u8::is_ascii_uppercase),
                "{}",
                flag.name()
            );
            // Every one-byte change of the keyword, and every case of it.
            for position in 0..keyword.len() {
                for byte in 0..=u8::MAX {
                    let mut word = keyword.to_vec();
                    if let Some(slot) = word.get_mut(position) {
                        *slot = byte;
                    }
                    assert_eq!(
                        is_keyword(&word, keyword),
                        word.eq_ignore_ascii_case(keyword),
                        "{word:?}"
                    );
                }
            }
            assert!(is_keyword(&keyword.to_ascii_lowercase(), keyword));
            assert!(!is_keyword(keyword.get(1..).unwrap_or_default(), keyword));
        }
    }
}
