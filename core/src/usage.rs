//! Usage counters for reporting: how much a key spent per bucket of time (tokens per
//! hour for the last day, say), in a fixed ring of buckets, with no entry per request.
//!
//! Buckets are aligned to the Unix epoch like fixed windows: bucket `k` covers
//! `[k * bucket_ms, (k + 1) * bucket_ms)`. A counter keeps the last `buckets` of them;
//! older amounts are forgotten as time moves on, and a counter whose newest bucket has
//! left the ring is exactly no key (it expires by itself). Amounts only go up, and
//! saturate at [`MAX_USAGE_AMOUNT`]: a counter never wraps.
//!
//! A clock that moves back never rewrites the past: an amount recorded before the newest
//! bucket counts in the newest bucket (elapsed time is never negative).

use crate::error::{ArgumentError, MAX_COUNT, MAX_DURATION_MS, at_most, duration, positive};
use crate::limiter::{Limiter, WrongAlgorithm};
use crate::time::Timestamp;
use core::fmt;

/// The most buckets one counter keeps: a day of minutes. A call at this size walks and
/// replies 1,440 buckets, well under a millisecond; a write propagates the call itself
/// (`RL.REPLAY`) when the state is larger.
pub const MAX_USAGE_BUCKETS: u64 = 1_440;
/// The largest bucket amount and total: `i64::MAX`, so that every amount is a valid
/// integer reply. Amounts saturate here instead of wrapping.
pub const MAX_USAGE_AMOUNT: u64 = i64::MAX as u64;
/// The largest amount one call records: 2^62, as any cost.
pub const MAX_USAGE_RECORD: u64 = MAX_COUNT;

/// The shape of a usage counter: `buckets` buckets of `bucket_ms` each.
///
/// ```
/// use redlimit_core::UsageShape;
/// let day_by_hour = UsageShape::hourly(24).unwrap();
/// assert_eq!((day_by_hour.bucket_ms(), day_by_hour.buckets()), (3_600_000, 24));
/// assert_eq!(day_by_hour.span_ms(), 86_400_000);
/// assert!(UsageShape::new(60_000, 0).is_err());
/// assert!(UsageShape::new(60_000, 1_441).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UsageShape {
    bucket_ms: u64,
    buckets: u64,
}

/// The amounts a counter holds: oldest first, the last one in the bucket that starts at
/// `newest_ms`. Canonical: never empty, its first and last amounts are not zero, at most
/// `buckets` long.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UsageBuckets {
    newest_ms: u64,
    amounts: Vec<u64>,
}

/// A call recorded usage with a shape other than the key's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// The shape the key records in.
    pub stored: UsageShape,
    /// The shape the call gave.
    pub given: UsageShape,
}

impl fmt::Display for ShapeMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bucket_ms and buckets must be the key's: it records {} buckets of {} ms, not {} \
             of {} ms (RL.RESET the key to change its shape)",
            self.stored.buckets, self.stored.bucket_ms, self.given.buckets, self.given.bucket_ms
        )
    }
}

impl std::error::Error for ShapeMismatch {}

/// Why usage could not be recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageError {
    /// The key holds a limiter, not a usage counter.
    WrongAlgorithm(WrongAlgorithm),
    /// The key records usage in another shape.
    Shape(ShapeMismatch),
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongAlgorithm(wrong) => fmt::Display::fmt(wrong, f),
            Self::Shape(mismatch) => fmt::Display::fmt(mismatch, f),
        }
    }
}

impl std::error::Error for UsageError {}

/// What recording usage did: the total over the ring afterwards, and the counter to
/// store (`None` when nothing changed: an amount of zero).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The sum of the amounts in the ring after the call (saturating).
    pub total: u64,
    /// The new counter to store, when it changed.
    pub update: Option<Limiter>,
}

impl UsageShape {
    /// A shape of `buckets` buckets of `bucket_ms` each.
    ///
    /// # Errors
    /// A zero argument, more than [`MAX_USAGE_BUCKETS`] buckets, or a span
    /// (`bucket_ms × buckets`) above 10^13 ms.
    pub fn new(bucket_ms: u64, buckets: u64) -> Result<Self, ArgumentError> {
        let bucket_ms = duration("bucket_ms", bucket_ms)?;
        let buckets = at_most("buckets", positive("buckets", buckets)?, MAX_USAGE_BUCKETS)?;
        if bucket_ms.saturating_mul(buckets) > MAX_DURATION_MS {
            return Err(ArgumentError::new(
                "bucket_ms",
                format!("such that bucket_ms * buckets is at most {MAX_DURATION_MS}"),
            ));
        }
        Ok(Self { bucket_ms, buckets })
    }

    /// `hours` buckets of one hour.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn hourly(hours: u64) -> Result<Self, ArgumentError> {
        Self::new(3_600_000, hours)
    }

    /// `minutes` buckets of one minute.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn per_minute(minutes: u64) -> Result<Self, ArgumentError> {
        Self::new(60_000, minutes)
    }

    /// `days` buckets of one day (UTC days: buckets are aligned to the Unix epoch).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn daily(days: u64) -> Result<Self, ArgumentError> {
        Self::new(86_400_000, days)
    }

    /// The length of one bucket, in milliseconds.
    #[must_use]
    pub const fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    /// How many buckets the ring keeps.
    #[must_use]
    pub const fn buckets(&self) -> u64 {
        self.buckets
    }

    /// The time the ring covers: `bucket_ms × buckets` (at most 10^13 ms).
    #[must_use]
    pub const fn span_ms(&self) -> u64 {
        self.bucket_ms.saturating_mul(self.buckets)
    }

    /// The start of the bucket that contains `ms`.
    #[must_use]
    pub const fn bucket_start(&self, ms: u64) -> u64 {
        ms - ms % self.bucket_ms
    }

    /// The start of the bucket that counts at `now`: the one containing `now`, or the
    /// newest recorded one if the clock moved back before it.
    fn current_bucket(&self, counted: Option<&UsageBuckets>, now: Timestamp) -> u64 {
        let now_bucket = self.bucket_start(now.as_micros() / 1_000);
        counted.map_or(now_bucket, |counted| now_bucket.max(counted.newest_ms))
    }

    /// Adds `amount` at `now` to the counter `previous` (`None`: a new one). Commands go
    /// through [`record`](Self::record), which checks the key's kind and shape and writes
    /// nothing for a zero amount (a new counter of amount 0 is not one they store).
    ///
    /// ```
    /// use redlimit_core::{Timestamp, UsageShape};
    /// let shape = UsageShape::new(1_000, 3).unwrap();
    /// let counted = shape.add(None, Timestamp::from_millis(10_500), 7);
    /// let counted = shape.add(Some(&counted), Timestamp::from_millis(12_100), 5);
    /// assert_eq!(shape.read(&counted, Timestamp::from_millis(12_100)), [(10_000, 7), (11_000, 0), (12_000, 5)]);
    /// assert_eq!(shape.read(&counted, Timestamp::from_millis(13_000)), [(11_000, 0), (12_000, 5), (13_000, 0)]);
    /// ```
    #[must_use]
    pub fn add(
        &self,
        previous: Option<&UsageBuckets>,
        now: Timestamp,
        amount: u64,
    ) -> UsageBuckets {
        let current = self.current_bucket(previous, now);
        let mut amounts = match previous {
            Some(previous) => {
                let moved = (current - previous.newest_ms) / self.bucket_ms;
                if moved >= self.buckets {
                    Vec::new()
                } else {
                    let mut amounts = previous.amounts.clone();
                    // `moved` is below `buckets` (at most 1,440): it fits any usize.
                    amounts.resize(amounts.len() + moved as usize, 0);
                    let keep = self.buckets as usize;
                    if amounts.len() > keep {
                        amounts.drain(..amounts.len() - keep);
                    }
                    amounts
                }
            }
            None => Vec::new(),
        };
        match amounts.last_mut() {
            Some(last) => *last = last.saturating_add(amount).min(MAX_USAGE_AMOUNT),
            None => amounts.push(amount.min(MAX_USAGE_AMOUNT)),
        }
        let leading_zeros = amounts.iter().take_while(|&&amount| amount == 0).count();
        amounts.drain(..leading_zeros.min(amounts.len().saturating_sub(1)));
        UsageBuckets {
            newest_ms: current,
            amounts,
        }
    }

    /// Every bucket of the ring at `now`, oldest first, as `(bucket start ms, amount)`:
    /// exactly `buckets` of them, ending with the bucket that counts at `now`, zeros
    /// included.
    #[must_use]
    pub fn read(&self, counted: &UsageBuckets, now: Timestamp) -> Vec<(u64, u64)> {
        let current = self.current_bucket(Some(counted), now);
        let oldest = current.saturating_sub((self.buckets - 1) * self.bucket_ms);
        let mut out = Vec::with_capacity(usize::try_from(self.buckets).unwrap_or(0));
        let mut start = oldest;
        while start <= current {
            out.push((start, counted.amount_at(start, self.bucket_ms)));
            match start.checked_add(self.bucket_ms) {
                Some(next) => start = next,
                None => break,
            }
        }
        out
    }

    /// The sum of the ring's amounts at `now` (saturating at [`MAX_USAGE_AMOUNT`]).
    #[must_use]
    pub fn total(&self, counted: &UsageBuckets, now: Timestamp) -> u64 {
        let current = self.current_bucket(Some(counted), now);
        let oldest = current.saturating_sub((self.buckets - 1) * self.bucket_ms);
        counted
            .starts(self.bucket_ms)
            .filter(|&(start, _)| start >= oldest)
            .fold(0u64, |sum, (_, amount)| sum.saturating_add(amount))
            .min(MAX_USAGE_AMOUNT)
    }

    /// When `counted` equals no key: its newest bucket leaves the ring.
    #[must_use]
    pub fn idle_at(&self, counted: &UsageBuckets) -> Timestamp {
        Timestamp::from_millis(counted.newest_ms.saturating_add(self.span_ms()))
    }

    /// Records `amount` at `now` in the key holding `stored` (`None`: no key): the total
    /// afterwards and the counter to store. An amount of zero only reads the total.
    ///
    /// ```
    /// use redlimit_core::{Timestamp, UsageShape};
    /// let shape = UsageShape::hourly(24).unwrap();
    /// let now = Timestamp::from_millis(1_700_000_000_000);
    /// let first = shape.record(None, now, 900).unwrap();
    /// assert_eq!(first.total, 900);
    /// let second = shape.record(first.update.as_ref(), now, 100).unwrap();
    /// assert_eq!(second.total, 1_000);
    /// ```
    ///
    /// # Errors
    /// The key holds a limiter ([`UsageError::WrongAlgorithm`]) or a counter of another
    /// shape ([`UsageError::Shape`]).
    pub fn record(
        &self,
        stored: Option<&Limiter>,
        now: Timestamp,
        amount: u64,
    ) -> Result<Recorded, UsageError> {
        let previous = match Limiter::live(stored, now) {
            None => None,
            Some(Limiter::Usage(shape, counted)) if shape == self => Some(&**counted),
            Some(Limiter::Usage(shape, _)) => {
                return Err(UsageError::Shape(ShapeMismatch {
                    stored: *shape,
                    given: *self,
                }));
            }
            Some(other) => {
                return Err(UsageError::WrongAlgorithm(WrongAlgorithm {
                    stored: other.algorithm(),
                }));
            }
        };
        if amount == 0 {
            let total = previous.map_or(0, |counted| self.total(counted, now));
            return Ok(Recorded {
                total,
                update: None,
            });
        }
        let counted = self.add(previous, now, amount);
        Ok(Recorded {
            total: self.total(&counted, now),
            update: Some(Limiter::Usage(*self, Box::new(counted))),
        })
    }
}

impl UsageBuckets {
    /// A counter from its stored parts, checked against `shape` as a command would have
    /// left it.
    ///
    /// # Errors
    /// No amount, more amounts than buckets, a zero first or last amount, an amount above
    /// [`MAX_USAGE_AMOUNT`], or a newest bucket that is not aligned or starts too early
    /// to hold the older ones.
    pub fn from_parts(
        shape: &UsageShape,
        newest_ms: u64,
        amounts: Vec<u64>,
    ) -> Result<Self, &'static str> {
        let (Some(&first), Some(&last)) = (amounts.first(), amounts.last()) else {
            return Err("a usage counter without amounts");
        };
        let older = (amounts.len() as u64 - 1).saturating_mul(shape.bucket_ms);
        let valid = amounts.len() as u64 <= shape.buckets
            && first > 0
            && last > 0
            && amounts.iter().all(|&amount| amount <= MAX_USAGE_AMOUNT)
            && newest_ms % shape.bucket_ms == 0
            && newest_ms >= older;
        if valid {
            Ok(Self { newest_ms, amounts })
        } else {
            Err("a usage counter no command can produce")
        }
    }

    /// The start of the newest recorded bucket, Unix milliseconds.
    #[must_use]
    pub const fn newest_ms(&self) -> u64 {
        self.newest_ms
    }

    /// The recorded amounts, oldest first, the last one in the newest bucket.
    #[must_use]
    pub fn amounts(&self) -> &[u64] {
        &self.amounts
    }

    /// Bytes on the heap.
    #[must_use]
    pub fn heap_size(&self) -> usize {
        self.amounts.capacity() * core::mem::size_of::<u64>()
    }

    /// Each recorded amount with the start of its bucket, oldest first.
    fn starts(&self, bucket_ms: u64) -> impl Iterator<Item = (u64, u64)> + '_ {
        let count = self.amounts.len() as u64;
        self.amounts
            .iter()
            .enumerate()
            .map(move |(index, &amount)| {
                let back = (count - 1 - index as u64).saturating_mul(bucket_ms);
                (self.newest_ms.saturating_sub(back), amount)
            })
    }

    /// The amount recorded in the bucket starting at `start` (0 when none).
    fn amount_at(&self, start: u64, bucket_ms: u64) -> u64 {
        if start > self.newest_ms {
            return 0;
        }
        let back = (self.newest_ms - start) / bucket_ms;
        usize::try_from(back)
            .ok()
            .and_then(|back| self.amounts.len().checked_sub(back + 1))
            .and_then(|index| self.amounts.get(index))
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
