//! The commands under test and one command line (`Call`), with helpers to show and
//! write arguments.

use std::fmt;

use redis::Cmd;

use crate::oracle::reading::{Reading, read_number};

/// The commands under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    TokenBucket,
    Throttle,
    Sliding,
    Fixed,
    All,
    Acquire,
    Release,
    Reset,
    Status,
    SetState,
}

impl Command {
    /// The name as the server registers it (and prints it in arity errors).
    pub fn name(self) -> &'static str {
        match self {
            Command::TokenBucket => "rl.tokenbucket",
            Command::Throttle => "rl.throttle",
            Command::Sliding => "rl.sliding",
            Command::Fixed => "rl.fixed",
            Command::All => "rl.all",
            Command::Acquire => "rl.acquire",
            Command::Release => "rl.release",
            Command::Reset => "rl.reset",
            Command::Status => "rl.status",
            Command::SetState => "rl.setstate",
        }
    }

    /// Argument counts (after the name) the server refuses itself, by the declared arity,
    /// before the module runs — and at MULTI queue time.
    pub fn server_rejects_arity(self, args: usize) -> bool {
        match self {
            Command::TokenBucket | Command::Throttle | Command::All => args < 4,
            Command::Sliding | Command::Fixed => args < 3,
            Command::Acquire => args != 4,
            Command::Release | Command::SetState => args != 2,
            Command::Reset => args < 1,
            Command::Status => args != 1,
        }
    }
}

/// One command line: a (maybe mixed-case) name and its raw arguments.
#[derive(Clone)]
pub struct Call {
    pub command: Command,
    pub name: Vec<u8>,
    pub args: Vec<Vec<u8>>,
}

impl Call {
    pub fn new(command: Command, args: Vec<Vec<u8>>) -> Self {
        Call {
            command,
            name: command.name().to_ascii_uppercase().into_bytes(),
            args,
        }
    }

    pub fn cmd(&self) -> Cmd {
        let mut cmd = Cmd::new();
        cmd.arg(&self.name[..]);
        for arg in &self.args {
            cmd.arg(&arg[..]);
        }
        cmd
    }

    /// The keys the command may touch.
    pub fn keys(&self) -> &[Vec<u8>] {
        match self.command {
            Command::Reset => &self.args,
            Command::All => {
                let numkeys = match self.args.first().map(|n| read_number(n)) {
                    Some(Reading::Exact(n) | Reading::Odd(n)) => n,
                    _ => 0,
                };
                let end = usize::try_from(numkeys)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1)
                    .min(self.args.len());
                self.args.get(1..end).unwrap_or_default()
            }
            _ => self.args.get(..1).unwrap_or_default(),
        }
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show(&self.name))?;
        for arg in &self.args {
            write!(f, " {}", show(arg))?;
        }
        Ok(())
    }
}

/// Bytes as a quoted, escaped string, abbreviated when long.
pub fn show(bytes: &[u8]) -> String {
    const HEAD: usize = 40;
    match bytes.get(..HEAD) {
        Some(head) if bytes.len() > HEAD + 8 => {
            if bytes.iter().all(|b| Some(b) == bytes.first()) {
                format!("\"{}\"x{}", head[..1].escape_ascii(), bytes.len())
            } else {
                format!("\"{}\"...({} bytes)", head.escape_ascii(), bytes.len())
            }
        }
        _ => format!("\"{}\"", bytes.escape_ascii()),
    }
}

pub fn decimal(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

pub fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}
