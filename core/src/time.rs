//! Time as the algorithms see it: a server timestamp passed in by the caller.

use core::time::Duration;

/// A moment on the server's clock, in microseconds since the Unix epoch.
///
/// `core` never reads a clock: callers read one once per decision and pass it in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Self = Self(0);

    /// A timestamp `micros` microseconds after the Unix epoch.
    #[must_use]
    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// A timestamp `millis` milliseconds after the Unix epoch (saturating at the far future).
    #[must_use]
    pub const fn from_millis(millis: u64) -> Self {
        Self(millis.saturating_mul(1_000))
    }

    /// Microseconds since the Unix epoch.
    #[must_use]
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Nanoseconds since the Unix epoch.
    #[must_use]
    pub const fn as_nanos(self) -> u128 {
        self.0 as u128 * 1_000
    }

    /// Microseconds elapsed from `earlier` to `self`; zero when the clock went backwards.
    #[must_use]
    pub const fn micros_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// This timestamp moved `micros` microseconds later (saturating).
    #[must_use]
    pub const fn plus_micros(self, micros: u64) -> Self {
        Self(self.0.saturating_add(micros))
    }
}

/// Milliseconds in `duration`, rounded up.
#[must_use]
pub fn ceil_millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The smallest duration of whole microseconds that is at least `numerator / denominator` µs.
pub(crate) fn ceil_micros(numerator: u128, denominator: u128) -> Duration {
    let micros = numerator.div_ceil(denominator.max(1));
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_time_is_never_negative() {
        let later = Timestamp::from_millis(10);
        assert_eq!(Timestamp::from_millis(5).micros_since(later), 0);
        assert_eq!(later.micros_since(Timestamp::from_millis(5)), 5_000);
    }

    #[test]
    fn milliseconds_round_up() {
        assert_eq!(ceil_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ceil_millis(Duration::from_millis(3)), 3);
        assert_eq!(ceil_millis(Duration::from_micros(3_001)), 4);
        assert_eq!(ceil_millis(Duration::ZERO), 0);
    }
}
