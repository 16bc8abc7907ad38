//! Reading command arguments: binary-safe bytes, strict base-10 integers, options.

use crate::error::CommandError;
use crate::ffi::{self, RawString};

/// The arguments of a command after its name.
pub struct Args<'a> {
    rest: std::slice::Iter<'a, RawString>,
}

impl<'a> Args<'a> {
    /// Checks the count (`min..=max` arguments after the name) and skips the name.
    pub fn new(argv: &'a [RawString], min: usize, max: usize) -> Result<Self, CommandError> {
        let count = argv.len().saturating_sub(1);
        if argv.is_empty() || count < min || count > max {
            return Err(CommandError::Arity);
        }
        Ok(Self {
            rest: argv.get(1..).unwrap_or_default().iter(),
        })
    }

    /// The next raw argument (a key or a buffer).
    pub fn raw(&mut self) -> Result<RawString, CommandError> {
        self.rest.next().copied().ok_or(CommandError::Arity)
    }

    /// The next argument as a non-negative integer named `name`.
    #[inline]
    pub fn integer(&mut self, name: &str) -> Result<u64, CommandError> {
        integer(name, ffi::bytes(self.raw()?))
    }

    /// The next argument as a positive integer named `name`.
    #[inline]
    pub fn positive(&mut self, name: &str) -> Result<u64, CommandError> {
        positive(name, ffi::bytes(self.raw()?))
    }

    /// The next argument, if any, as bytes.
    pub fn next_bytes(&mut self) -> Option<&'a [u8]> {
        self.rest.next().map(|&arg| ffi::bytes(arg))
    }

    /// The next argument, if any, without consuming it.
    pub fn peek_bytes(&self) -> Option<&'a [u8]> {
        self.rest.as_slice().first().map(|&arg| ffi::bytes(arg))
    }

    /// Every argument left.
    pub fn remaining(&self) -> &'a [RawString] {
        self.rest.as_slice()
    }
}

/// A strict base-10, non-negative integer. A number above `u64::MAX` saturates to it:
/// every numeric argument is then checked against its own bound (far below `u64::MAX`),
/// so the error names the real bound rather than the width of the parser.
pub fn integer(name: &str, bytes: &[u8]) -> Result<u64, CommandError> {
    match digits(bytes) {
        Some(value) => Ok(value),
        None => Err(not_an_integer(name)),
    }
}

/// The value of strict base-10 digits (`-0` included), saturating; `None` if `bytes`
/// is not such a number. Returned in registers: the errors are made out of line.
#[inline]
fn digits(bytes: &[u8]) -> Option<u64> {
    let (negative, digits) = match bytes {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, bytes),
    };
    let mut value = 0u64;
    if digits.len() <= 19 {
        // At most 19 digits: below 10^19 < 2^64, so no step can overflow.
        for &byte in digits {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            value = value * 10 + u64::from(digit);
        }
    } else {
        for &byte in digits {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            value = value.saturating_mul(10).saturating_add(u64::from(digit));
        }
    }
    if digits.is_empty() || negative && value != 0 {
        return None;
    }
    Some(value)
}

#[cold]
#[inline(never)]
fn not_an_integer(name: &str) -> CommandError {
    CommandError::Argument(format!("{name} must be a non-negative integer"))
}

#[cold]
#[inline(never)]
fn not_positive(name: &str) -> CommandError {
    CommandError::Argument(format!("{name} must be a positive integer"))
}

/// Like [`integer`], and at least 1.
pub fn positive(name: &str, bytes: &[u8]) -> Result<u64, CommandError> {
    match digits(bytes) {
        Some(value) if value > 0 => Ok(value),
        _ => Err(not_positive(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<u64, CommandError>) -> String {
        match result {
            Err(CommandError::Argument(message)) => message,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn integers_are_strict_base_ten() {
        assert_eq!(integer("n", b"0").ok(), Some(0));
        assert_eq!(integer("n", b"18446744073709551615").ok(), Some(u64::MAX));
        assert_eq!(
            integer("n", b"9999999999999999999").ok(),
            Some(9_999_999_999_999_999_999),
            "19 digits, the fast path's longest"
        );
        assert_eq!(integer("n", b"00000000000000000000007").ok(), Some(7));
        assert_eq!(integer("n", b"-0").ok(), Some(0));
        for bad in [
            &b""[..],
            b"-",
            b"-1",
            b"1.5",
            b" 1",
            b"1e3",
            b"+1",
            b"0x10",
            b"\xff",
        ] {
            assert_eq!(
                message(integer("n", bad)),
                "n must be a non-negative integer",
                "{bad:?}"
            );
        }
        // Too large for the parser: saturates, and the argument's own bound refuses it.
        assert_eq!(integer("n", b"18446744073709551616").ok(), Some(u64::MAX));
        assert_eq!(
            integer("n", b"99999999999999999999999").ok(),
            Some(u64::MAX)
        );
    }

    #[test]
    fn positive_rejects_zero_and_names_the_argument() {
        assert_eq!(
            message(positive("capacity", b"0")),
            "capacity must be a positive integer"
        );
        assert_eq!(
            message(positive("capacity", b"-3")),
            "capacity must be a positive integer"
        );
        assert_eq!(
            positive("capacity", b"99999999999999999999").ok(),
            Some(u64::MAX)
        );
        assert_eq!(positive("capacity", b"7").ok(), Some(7));
    }
}
