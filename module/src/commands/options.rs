//! The request options shared by the limiting commands: `COST n`, `PEEK`, `MAXWAIT ms`,
//! `APPROX`, in any order, each at most once, keywords in any case.

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
}

impl Flag {
    /// This flag's bit in a set of seen flags.
    const fn bit(self) -> u8 {
        1 << self as u8
    }

    fn keyword(self) -> &'static [u8] {
        match self {
            Self::Cost => b"COST",
            Self::Peek => b"PEEK",
            Self::MaxWait => b"MAXWAIT",
            Self::Approx => b"APPROX",
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
}

/// Reads the options left in `args`, accepting only `accepted`.
pub fn parse(args: &mut Args<'_>, accepted: &[Flag]) -> Result<Options, CommandError> {
    let mut options = Options::default();
    let mut seen = 0u8;
    while let Some(word) = args.next_bytes() {
        let flag = accepted
            .iter()
            .copied()
            .find(|flag| word.eq_ignore_ascii_case(flag.keyword()))
            .filter(|flag| seen & flag.bit() == 0)
            .ok_or(CommandError::Syntax)?;
        seen |= flag.bit();
        match flag {
            Flag::Cost => options.request.cost = value(args, "COST")?,
            Flag::Peek => options.request.peek = true,
            Flag::MaxWait => options.request.max_wait_ms = value(args, "MAXWAIT")?,
            Flag::Approx => options.approx = true,
        }
    }
    Ok(options)
}

/// The value after an option keyword; a missing one is a syntax error.
fn value(args: &mut Args<'_>, name: &str) -> Result<u64, CommandError> {
    integer(name, args.next_bytes().ok_or(CommandError::Syntax)?)
}
