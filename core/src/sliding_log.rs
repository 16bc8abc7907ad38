//! Exact sliding window over a compact log of admitted requests.
//!
//! A request of cost `c` at `t` is allowed iff the costs admitted in `(t - window_ms, t]`
//! plus `c` are at most `limit`. The log keeps one entry per admitted request (so at
//! most `limit` entries), each as two varints: milliseconds since the previous entry
//! and the cost. At 100 requests in a minute that is about 3 bytes an entry, where a
//! sorted-set log costs tens.

use crate::decision::{Decision, Outcome, Request, RetryAfter};
use crate::error::{ArgumentError, duration, positive};
use crate::time::Timestamp;
use crate::varint;
use core::time::Duration;

/// The most entries a log may hold: bounds the memory of one key.
/// The largest exact limit: one call on a log this long stays well under a millisecond
/// (its time grows with the entries); `APPROX` takes larger limits in constant memory.
pub const MAX_SLIDING_LIMIT: u64 = 1 << 16;

/// At most `limit` units in any window of `window_ms`, counted exactly.
///
/// ```
/// use redlimit_core::SlidingWindow;
/// let policy = SlidingWindow::new(100, 60_000).unwrap();
/// assert_eq!(policy.limit(), 100);
/// assert!(SlidingWindow::new(0, 60_000).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SlidingWindow {
    limit: u64,
    window_ms: u64,
}

/// The admitted requests still inside a window, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlidingLog {
    first_ms: u64,
    last_ms: u64,
    total: u64,
    /// `(ms since previous entry, cost)` varint pairs; the first delta is 0.
    entries: Vec<u8>,
}

impl SlidingWindow {
    /// A policy.
    ///
    /// # Errors
    /// A zero argument, a `limit` above [`MAX_SLIDING_LIMIT`] (use `APPROX` there) or a
    /// `window_ms` above 10^13.
    pub fn new(limit: u64, window_ms: u64) -> Result<Self, ArgumentError> {
        let limit = positive("limit", limit)?;
        if limit > MAX_SLIDING_LIMIT {
            return Err(ArgumentError::new(
                "limit",
                format!("at most {MAX_SLIDING_LIMIT} for an exact log (use APPROX above)"),
            ));
        }
        Ok(Self {
            limit,
            window_ms: duration("window_ms", window_ms)?,
        })
    }

    /// Units per window.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The window length in milliseconds.
    #[must_use]
    pub const fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Decides `request` at `now` against the log left by `previous`.
    #[must_use]
    pub fn decide(
        &self,
        previous: Option<(&Self, &SlidingLog)>,
        now: Timestamp,
        request: Request,
    ) -> Outcome<SlidingLog> {
        let now_ms = now.as_micros() / 1_000;
        let log = self.current(previous, now_ms);
        let after = log.total.saturating_add(request.cost);
        if after > self.limit {
            let retry_after = if request.cost > self.limit {
                RetryAfter::Never
            } else {
                RetryAfter::After(millis(log.time_until_room(
                    after - self.limit,
                    now_ms,
                    self.window_ms,
                )))
            };
            let decision = self.decision(
                false,
                log.total,
                retry_after,
                log.reset_after(now_ms, self.window_ms),
            );
            return Outcome {
                decision,
                update: None,
            };
        }
        let log = if request.cost > 0 {
            log.with_entry(now_ms, request.cost)
        } else {
            log
        };
        let decision = self.decision(
            true,
            log.total,
            RetryAfter::Now,
            log.reset_after(now_ms, self.window_ms),
        );
        Outcome {
            decision,
            update: (!request.is_read_only()).then_some(log),
        }
    }

    /// The log that applies at `now_ms`: expired entries dropped; under another policy
    /// than the stored one, the usage capped at the new limit.
    pub(crate) fn current(
        &self,
        previous: Option<(&Self, &SlidingLog)>,
        now_ms: u64,
    ) -> SlidingLog {
        match previous {
            None => SlidingLog::default(),
            Some((policy, log)) if policy == self => log.without_expired(now_ms, self.window_ms),
            Some((_, log)) => log
                .without_expired(now_ms, self.window_ms)
                .capped(self.limit),
        }
    }

    fn decision(
        &self,
        allowed: bool,
        used: u64,
        retry_after: RetryAfter,
        reset_after: u64,
    ) -> Decision {
        Decision {
            allowed,
            limit: self.limit,
            remaining: self.limit.saturating_sub(used),
            retry_after,
            reset_after: millis(reset_after),
        }
    }

    /// When `log` equals no key: its newest entry leaves the window.
    #[must_use]
    pub fn idle_at(&self, log: &SlidingLog) -> Timestamp {
        Timestamp::from_millis(log.last_ms.saturating_add(self.window_ms))
    }
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

impl SlidingLog {
    /// A log from its first entry's time and its encoded entries, checked.
    ///
    /// # Errors
    /// Entries that do not parse, a first delta that is not 0, or totals that overflow.
    pub fn from_parts(first_ms: u64, entries: Vec<u8>) -> Result<Self, &'static str> {
        let mut log = Self {
            first_ms,
            last_ms: first_ms,
            total: 0,
            entries: Vec::new(),
        };
        let mut reader = varint::Reader::new(&entries);
        let mut first = true;
        while !reader.is_empty() {
            let (delta, cost) = (reader.varint()?, reader.varint()?);
            if first && delta != 0 || cost == 0 {
                return Err("malformed sliding log");
            }
            first = false;
            log.last_ms = log
                .last_ms
                .checked_add(delta)
                .ok_or("sliding log time overflows")?;
            log.total = log
                .total
                .checked_add(cost)
                .ok_or("sliding log total overflows")?;
        }
        log.entries = entries;
        Ok(log)
    }

    /// The first entry's time, Unix milliseconds (meaningless when empty).
    #[must_use]
    pub const fn first_ms(&self) -> u64 {
        self.first_ms
    }

    /// The newest entry's time, Unix milliseconds (`first_ms` when empty).
    pub(crate) const fn last_ms(&self) -> u64 {
        self.last_ms
    }

    /// The encoded entries.
    #[must_use]
    pub fn entries(&self) -> &[u8] {
        &self.entries
    }

    /// Bytes reserved for the encoded entries.
    #[must_use]
    pub fn entries_capacity(&self) -> usize {
        self.entries.capacity()
    }

    /// The sum of the logged costs.
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.total
    }

    /// Every entry as `(time_ms, cost)`, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut reader = varint::Reader::new(&self.entries);
        let mut time = self.first_ms;
        std::iter::from_fn(move || {
            let (delta, cost) = (reader.varint().ok()?, reader.varint().ok()?);
            time = time.saturating_add(delta);
            Some((time, cost))
        })
    }

    /// This log without the entries that left the window `(now - window, now]`.
    fn without_expired(&self, now_ms: u64, window_ms: u64) -> Self {
        let mut reader = varint::Reader::new(&self.entries);
        let (mut time, mut dropped) = (self.first_ms, 0u64);
        while !reader.is_empty() {
            let start = reader.position();
            let (Ok(delta), Ok(cost)) = (reader.varint(), reader.varint()) else {
                break;
            };
            time = time.saturating_add(delta);
            if time.saturating_add(window_ms) > now_ms {
                // Room for the entry `with_entry` may append next (two varints, 4 bytes
                // at these sizes), so that it does not reallocate.
                let mut entries = Vec::with_capacity(self.entries.len() - start + 2 + 4);
                entries.push(0);
                varint::put(&mut entries, cost);
                entries
                    .extend_from_slice(self.entries.get(reader.position()..).unwrap_or_default());
                return Self {
                    first_ms: time,
                    last_ms: self.last_ms,
                    total: self.total - dropped,
                    entries,
                };
            }
            dropped += cost;
        }
        Self::default()
    }

    /// This log keeping only its newest entries worth at most `limit` (the oldest kept
    /// one cut down to fit): a policy change leaves at worst a window just used up.
    fn capped(self, limit: u64) -> Self {
        if self.total <= limit {
            return self;
        }
        let entries: Vec<(u64, u64)> = self.iter().collect();
        let mut budget = limit;
        let mut kept = Vec::new();
        for &(time, cost) in entries.iter().rev() {
            if budget == 0 {
                break;
            }
            let cost = cost.min(budget);
            budget -= cost;
            kept.push((time, cost));
        }
        kept.iter()
            .rev()
            .fold(Self::default(), |log, &(time, cost)| {
                log.with_entry(time, cost)
            })
    }

    /// This log with `units` taken back from its oldest entries (an entry that is left
    /// with nothing is dropped): the entries that leave the window first, so a refund
    /// never frees more, at any later instant, than taking it from the refunded call's
    /// own entry would.
    pub(crate) fn refunded(self, units: u64) -> Self {
        // Only the oldest entries change: the rest of the bytes are copied as they are.
        let mut reader = varint::Reader::new(&self.entries);
        let (mut time, mut left) = (self.first_ms, units);
        while !reader.is_empty() {
            let (Ok(delta), Ok(cost)) = (reader.varint(), reader.varint()) else {
                break;
            };
            time = time.saturating_add(delta);
            if cost > left {
                let rest = self.entries.get(reader.position()..).unwrap_or_default();
                let mut entries = Vec::with_capacity(rest.len() + 2 + 4);
                entries.push(0);
                varint::put(&mut entries, cost - left);
                entries.extend_from_slice(rest);
                return Self {
                    first_ms: time,
                    last_ms: self.last_ms,
                    total: self.total - units,
                    entries,
                };
            }
            left -= cost;
        }
        Self::default()
    }

    /// This log with `cost` admitted at `now_ms` (never before the newest entry: a clock
    /// that moved back records at the newest entry's time, which expires no earlier).
    pub(crate) fn with_entry(mut self, now_ms: u64, cost: u64) -> Self {
        if self.entries.is_empty() {
            self.first_ms = now_ms;
            self.last_ms = now_ms;
        }
        let at = now_ms.max(self.last_ms);
        self.entries.reserve_exact(4);
        varint::put(&mut self.entries, at - self.last_ms);
        varint::put(&mut self.entries, cost);
        self.last_ms = at;
        self.total += cost;
        self
    }

    /// Milliseconds until entries worth at least `excess` have left the window.
    fn time_until_room(&self, excess: u64, now_ms: u64, window_ms: u64) -> u64 {
        let mut freed = 0u64;
        for (time, cost) in self.iter() {
            freed = freed.saturating_add(cost);
            if freed >= excess {
                return time.saturating_add(window_ms).saturating_sub(now_ms);
            }
        }
        0
    }

    /// Milliseconds until the newest entry leaves the window.
    fn reset_after(&self, now_ms: u64, window_ms: u64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        self.last_ms
            .saturating_add(window_ms)
            .saturating_sub(now_ms)
    }
}

#[cfg(test)]
mod tests;
