//! Every error a command can reply, with its text in one place.

use redlimit_core::{ArgumentError, WrongAlgorithm};

/// The standard reply for a key of another type.
pub const WRONG_TYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
/// The start of every syntax error: an unknown, repeated or incomplete option. What
/// follows names the token.
pub const SYNTAX: &str = "ERR syntax error";
/// A caught panic or a failed server call; the details go to the server log.
pub const INTERNAL: &str = "ERR internal error in redlimit (details in the server log)";

/// Why a command failed.
#[derive(Debug)]
pub enum CommandError {
    /// Too few or too many arguments.
    Arity,
    /// An unknown, repeated or incomplete option: the text says which.
    Syntax(String),
    /// A numeric argument out of range: the message names it.
    Argument(String),
    /// The key holds another type, or a limiter of another algorithm.
    WrongType(Option<WrongAlgorithm>),
    /// A server call failed.
    Internal,
}

impl CommandError {
    /// The error reply for `command` (its name in lower case, as the server prints it).
    pub fn reply_text(&self, command: &str) -> String {
        match self {
            Self::Arity => format!("ERR wrong number of arguments for '{command}' command"),
            Self::Syntax(detail) => format!("{SYNTAX}{detail}"),
            Self::Argument(message) => format!("ERR {message}"),
            Self::WrongType(None) => WRONG_TYPE.to_owned(),
            Self::WrongType(Some(wrong)) => format!("WRONGTYPE {wrong}"),
            Self::Internal => INTERNAL.to_owned(),
        }
    }
}

impl CommandError {
    /// A syntax error at `token`: `ERR syntax error near '<token>'`.
    pub fn syntax_near(token: &[u8]) -> Self {
        Self::Syntax(format!(" near '{}'", printable(token)))
    }
}

/// The longest token an error repeats.
const MAX_SHOWN: usize = 40;

/// `token` as an error reply may carry it: printable ASCII kept, every other byte as
/// `\xNN` (a reply must not contain CR or LF), cut after [`MAX_SHOWN`] bytes.
pub fn printable(token: &[u8]) -> String {
    let mut shown: String = token
        .iter()
        .take(MAX_SHOWN)
        .flat_map(|&byte| std::ascii::escape_default(byte))
        .map(char::from)
        .collect();
    if token.len() > MAX_SHOWN {
        shown.push_str("...");
    }
    shown
}

impl From<ArgumentError> for CommandError {
    fn from(error: ArgumentError) -> Self {
        Self::Argument(error.to_string())
    }
}

impl From<WrongAlgorithm> for CommandError {
    fn from(error: WrongAlgorithm) -> Self {
        Self::WrongType(Some(error))
    }
}
