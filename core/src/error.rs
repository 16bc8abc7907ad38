//! Why a policy or request could not be built.

use core::fmt;

/// An argument that is out of the range the algorithms compute exactly.
///
/// Displays as `<argument> must be <requirement>`, the shape of the module's error replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgumentError {
    argument: &'static str,
    requirement: String,
}

impl ArgumentError {
    /// `argument` does not satisfy `requirement` (e.g. "a positive integer").
    pub fn new(argument: &'static str, requirement: impl Into<String>) -> Self {
        Self {
            argument,
            requirement: requirement.into(),
        }
    }

    /// The name of the offending argument, as the command documentation spells it.
    #[must_use]
    pub fn argument(&self) -> &'static str {
        self.argument
    }
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} must be {}", self.argument, self.requirement)
    }
}

impl std::error::Error for ArgumentError {}

/// The longest duration any policy accepts: 10^13 ms, about 317 years. Every time a
/// decision computes then fits in 64-bit microseconds and in a signed 64-bit reply.
pub const MAX_DURATION_MS: u64 = 10_000_000_000_000;
/// The largest count any policy accepts (limits, capacities, refill amounts): 2^62.
pub const MAX_COUNT: u64 = 1 << 62;

/// Checks a duration: at least 1 ms, at most [`MAX_DURATION_MS`].
pub(crate) fn duration(argument: &'static str, value: u64) -> Result<u64, ArgumentError> {
    at_most(argument, positive(argument, value)?, MAX_DURATION_MS)
}

/// Checks a count: at least 1, at most [`MAX_COUNT`].
pub(crate) fn count(argument: &'static str, value: u64) -> Result<u64, ArgumentError> {
    at_most(argument, positive(argument, value)?, MAX_COUNT)
}

/// Checks that `value` is at least 1.
pub(crate) fn positive(argument: &'static str, value: u64) -> Result<u64, ArgumentError> {
    if value == 0 {
        return Err(ArgumentError::new(argument, "a positive integer"));
    }
    Ok(value)
}

/// Checks that `value` is at most `max`.
pub(crate) fn at_most(argument: &'static str, value: u64, max: u64) -> Result<u64, ArgumentError> {
    if value > max {
        return Err(ArgumentError::new(argument, format!("at most {max}")));
    }
    Ok(value)
}
