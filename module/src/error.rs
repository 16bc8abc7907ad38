//! Every error a command can reply, with its text in one place.

use redlimit_core::{ArgumentError, WrongAlgorithm};

/// The standard reply for a key of another type.
pub const WRONG_TYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
/// An unknown, repeated or incomplete option.
pub const SYNTAX: &str = "ERR syntax error";
/// A caught panic or a failed server call; the details go to the server log.
pub const INTERNAL: &str = "ERR internal error in redlimit (details in the server log)";

/// Why a command failed.
#[derive(Debug)]
pub enum CommandError {
    /// Too few or too many arguments.
    Arity,
    /// An unknown, repeated or incomplete option.
    Syntax,
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
            Self::Syntax => SYNTAX.to_owned(),
            Self::Argument(message) => format!("ERR {message}"),
            Self::WrongType(None) => WRONG_TYPE.to_owned(),
            Self::WrongType(Some(wrong)) => format!("WRONGTYPE {wrong}"),
            Self::Internal => INTERNAL.to_owned(),
        }
    }
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
