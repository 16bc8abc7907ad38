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
    // Whole seconds are whole milliseconds: only the sub-second part rounds (no 128-bit
    // division on the hot path). Saturates as `as_nanos().div_ceil(10^6)` clamped would.
    let sub_ms = u64::from(duration.subsec_nanos().div_ceil(1_000_000));
    duration
        .as_secs()
        .saturating_mul(1_000)
        .saturating_add(sub_ms)
}

/// The smallest duration of whole microseconds that is at least `numerator / denominator` µs.
pub(crate) fn ceil_micros(numerator: u128, denominator: u128) -> Duration {
    let micros = div_ceil(numerator, denominator.max(1));
    Duration::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
}

/// `numerator / denominator` rounded down (0 for a zero denominator), in 64-bit
/// arithmetic when both fit: a 128-bit division is a libcall (`__udivti3`) costing
/// several times a 64-bit one, and the algorithms' numbers almost always fit.
#[inline]
pub(crate) fn div_floor(numerator: u128, denominator: u128) -> u128 {
    if (numerator | denominator) >> 64 == 0 {
        let (n, d) = (numerator as u64, denominator as u64);
        return u128::from(n.checked_div(d).unwrap_or(0));
    }
    numerator.checked_div(denominator).unwrap_or(0)
}

/// `numerator / denominator` rounded up (0 for a zero denominator); see [`div_floor`].
#[inline]
pub(crate) fn div_ceil(numerator: u128, denominator: u128) -> u128 {
    if denominator == 0 {
        return 0;
    }
    if (numerator | denominator) >> 64 == 0 {
        let (n, d) = (numerator as u64, denominator as u64);
        return u128::from(n.div_ceil(d));
    }
    numerator.div_ceil(denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fast_paths_match_128_bit_arithmetic(
            secs in prop_oneof![Just(u64::MAX), any::<u64>(), 0u64..10_000],
            nanos in 0u32..1_000_000_000,
            n in prop_oneof![any::<u128>(), any::<u64>().prop_map(u128::from)],
            d in prop_oneof![any::<u128>(), any::<u64>().prop_map(u128::from), Just(0u128)],
        ) {
            let duration = Duration::new(secs, nanos);
            let reference = u64::try_from(duration.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
            prop_assert_eq!(ceil_millis(duration), reference);
            prop_assert_eq!(div_floor(n, d), n.checked_div(d).unwrap_or(0));
            prop_assert_eq!(div_ceil(n, d), if d == 0 { 0 } else { n.div_ceil(d) });
        }
    }

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
        assert_eq!(ceil_millis(Duration::new(2, 1)), 2_001);
        assert_eq!(
            ceil_millis(Duration::new(u64::MAX / 1_000, 999_000_001)),
            u64::MAX
        );
        assert_eq!(ceil_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn divisions_agree_with_128_bits() {
        let big = u128::from(u64::MAX) + 7;
        for (n, d) in [
            (0u128, 1u128),
            (7, 2),
            (8, 2),
            (big, 3),
            (5, big),
            (big, big),
            (9, 0),
        ] {
            assert_eq!(div_floor(n, d), n.checked_div(d).unwrap_or(0), "{n}/{d}");
            let ceil = if d == 0 { 0 } else { n.div_ceil(d) };
            assert_eq!(div_ceil(n, d), ceil, "{n}/{d}");
        }
    }
}
