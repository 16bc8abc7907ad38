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
