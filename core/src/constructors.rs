//! Shorthands that build a [`Policy`] of each algorithm in one call.

use crate::error::ArgumentError;
use crate::fixed_window::FixedWindow;
use crate::limiter::Policy;
use crate::sliding_counter::SlidingCounter;
use crate::sliding_log::SlidingWindow;
use crate::throttle::Throttle;
use crate::token_bucket::TokenBucket;

impl Policy {
    /// A [`TokenBucket`] of `capacity` tokens gaining `refill_tokens` every `refill_ms`.
    ///
    /// ```
    /// use redlimit_core::Policy;
    /// let ten_per_second = Policy::token_bucket(10, 10, 1_000).unwrap();
    /// assert!(Policy::token_bucket(0, 1, 1_000).is_err());
    /// ```
    ///
    /// # Errors
    /// A zero or too large argument, named.
    pub fn token_bucket(
        capacity: u64,
        refill_tokens: u64,
        refill_ms: u64,
    ) -> Result<Self, ArgumentError> {
        TokenBucket::new(capacity, refill_tokens, refill_ms).map(Self::TokenBucket)
    }

    /// A redis-cell [`Throttle`]: bursts of `max_burst + 1`, `count_per_period` per
    /// `period_s` seconds.
    ///
    /// # Errors
    /// A zero or too large argument, named.
    pub fn throttle(
        max_burst: u64,
        count_per_period: u64,
        period_s: u64,
    ) -> Result<Self, ArgumentError> {
        Throttle::new(max_burst, count_per_period, period_s).map(Self::Throttle)
    }

    /// An epoch-aligned [`FixedWindow`] of `limit` per `window_ms`.
    ///
    /// # Errors
    /// A zero or too large argument, named.
    pub fn fixed(limit: u64, window_ms: u64) -> Result<Self, ArgumentError> {
        FixedWindow::new(limit, window_ms).map(Self::Fixed)
    }

    /// An exact [`SlidingWindow`] of `limit` per `window_ms`.
    ///
    /// # Errors
    /// A zero or too large argument, named.
    pub fn sliding(limit: u64, window_ms: u64) -> Result<Self, ArgumentError> {
        SlidingWindow::new(limit, window_ms).map(Self::Sliding)
    }

    /// An approximate sliding window ([`SlidingCounter`]) of `limit` per `window_ms`.
    ///
    /// # Errors
    /// A zero or too large argument, named.
    pub fn sliding_approx(limit: u64, window_ms: u64) -> Result<Self, ArgumentError> {
        SlidingCounter::new(limit, window_ms).map(Self::SlidingApprox)
    }

    /// The policy's capacity or limit: what a decision reports as `limit`.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        match self {
            Self::TokenBucket(p) => p.capacity(),
            Self::Throttle(p) => p.limit(),
            Self::Fixed(p) => p.limit(),
            Self::Sliding(p) => p.limit(),
            Self::SlidingApprox(p) => p.limit(),
        }
    }
}
