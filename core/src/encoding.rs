//! The stored encoding of a limiter: versioned, compact, validated on the way in.
//!
//! Layout: a version byte, an algorithm byte, then the policy's numbers and the
//! state's numbers as unsigned LEB128 varints. The same bytes are written to RDB,
//! carried by replication and AOF (`RL.SETSTATE`), and read back by every loader.

use crate::concurrency::{Concurrency, Lease, Leases};
use crate::fixed_window::{FixedWindow, WindowCount};
use crate::limiter::Limiter;
use crate::sliding_counter::{SlidingCounter, WindowPair};
use crate::sliding_log::{SlidingLog, SlidingWindow};
use crate::throttle::{Throttle, ThrottleState};
use crate::time::Timestamp;
use crate::token_bucket::{BucketState, TokenBucket};
use crate::usage::{MAX_USAGE_BUCKETS, UsageBuckets, UsageShape};
use crate::varint::{self, CountingSink, Reader, Sink, SliceSink};
use core::fmt;

/// The encoding version this build writes.
pub const ENCODING_VERSION: u8 = 1;

const TAG_TOKEN_BUCKET: u8 = 1;
const TAG_THROTTLE: u8 = 2;
const TAG_FIXED: u8 = 3;
const TAG_SLIDING: u8 = 4;
const TAG_SLIDING_APPROX: u8 = 5;
const TAG_CONCURRENCY: u8 = 6;
const TAG_USAGE: u8 = 7;

/// Bytes that are not a limiter this build understands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(&'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

impl Limiter {
    /// The stored encoding of this limiter.
    ///
    /// ```
    /// use redlimit_core::{Limiter, Policy, Request, Timestamp, TokenBucket};
    /// let policy = Policy::TokenBucket(TokenBucket::new(5, 1, 1_000).unwrap());
    /// let limiter = policy.decide(None, Timestamp::from_millis(9), Request::new(1)).unwrap().update.unwrap();
    /// assert_eq!(Limiter::decode(&limiter.encode()), Ok(limiter));
    /// ```
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        self.encode_to(&mut out);
        out
    }

    /// Writes the stored encoding of this limiter into `buffer` without allocating, and
    /// returns its length; `None` when it does not fit (the buffer then holds a prefix).
    ///
    /// ```
    /// use redlimit_core::{Limiter, Policy, Request, Timestamp, TokenBucket};
    /// let policy = Policy::TokenBucket(TokenBucket::new(5, 1, 1_000).unwrap());
    /// let limiter = policy.decide(None, Timestamp::from_millis(9), Request::new(1)).unwrap().update.unwrap();
    /// let mut buffer = [0u8; 64];
    /// let len = limiter.encode_into(&mut buffer).unwrap();
    /// assert_eq!(buffer[..len], limiter.encode()[..]);
    /// assert_eq!(limiter.encode_into(&mut [0u8; 3]), None);
    /// ```
    #[must_use]
    pub fn encode_into(&self, buffer: &mut [u8]) -> Option<usize> {
        let mut sink = SliceSink::new(buffer);
        self.encode_to(&mut sink);
        sink.written()
    }

    /// The length of [`encode`](Self::encode)'s bytes, without writing them.
    ///
    /// ```
    /// use redlimit_core::{Limiter, Policy, Request, Timestamp, TokenBucket};
    /// let policy = Policy::TokenBucket(TokenBucket::new(5, 1, 1_000).unwrap());
    /// let limiter = policy.decide(None, Timestamp::from_millis(9), Request::new(1)).unwrap().update.unwrap();
    /// assert_eq!(limiter.encoded_len(), limiter.encode().len());
    /// ```
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let mut sink = CountingSink::default();
        self.encode_to(&mut sink);
        sink.0
    }

    fn encode_to(&self, out: &mut impl Sink) {
        out.push(ENCODING_VERSION);
        match self {
            Self::TokenBucket(p, s) => {
                let numbers = [
                    p.capacity(),
                    p.refill_tokens(),
                    p.refill_ms(),
                    s.deficit,
                    s.at.as_micros(),
                ];
                put_all(out, TAG_TOKEN_BUCKET, &numbers);
            }
            Self::Throttle(p, s) => put_all(
                out,
                TAG_THROTTLE,
                &[p.max_burst(), p.count(), p.period_s(), s.tat_ns],
            ),
            Self::Fixed(p, s) => put_all(
                out,
                TAG_FIXED,
                &[p.limit(), p.window_ms(), s.end_ms, s.count],
            ),
            Self::Sliding(p, log) => {
                put_all(
                    out,
                    TAG_SLIDING,
                    &[p.limit(), p.window_ms(), log.first_ms()],
                );
                out.extend(log.entries());
            }
            Self::SlidingApprox(p, s) => {
                put_all(
                    out,
                    TAG_SLIDING_APPROX,
                    &[p.limit(), p.window_ms(), s.start_ms, s.previous, s.current],
                );
            }
            Self::Concurrency(p, leases) => {
                put_all(
                    out,
                    TAG_CONCURRENCY,
                    &[p.limit(), p.lease_ms(), leases.held().len() as u64],
                );
                for lease in leases.held() {
                    varint::put(out, lease.expires_ms);
                    varint::put(out, lease.id.len() as u64);
                    out.extend(&lease.id);
                }
            }
            Self::Usage(p, counted) => {
                let amounts = counted.amounts();
                put_all(
                    out,
                    TAG_USAGE,
                    &[
                        p.bucket_ms(),
                        p.buckets(),
                        counted.newest_ms(),
                        amounts.len() as u64,
                    ],
                );
                for &amount in amounts {
                    varint::put(out, amount);
                }
            }
        }
    }

    /// Reads a limiter back, checking every policy number as a command would.
    ///
    /// # Errors
    /// Unknown version or algorithm, truncated or trailing bytes, an invalid policy.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        if reader.byte().map_err(DecodeError)? != ENCODING_VERSION {
            return Err(DecodeError("unknown encoding version"));
        }
        let tag = reader.byte().map_err(DecodeError)?;
        let mut next = || reader.varint().map_err(DecodeError);
        let invalid = |_| DecodeError("invalid policy");
        let limiter = match tag {
            TAG_TOKEN_BUCKET => {
                let policy = TokenBucket::new(next()?, next()?, next()?).map_err(invalid)?;
                Self::TokenBucket(
                    policy,
                    BucketState {
                        deficit: next()?,
                        at: Timestamp::from_micros(next()?),
                    },
                )
            }
            TAG_THROTTLE => Self::Throttle(
                Throttle::new(next()?, next()?, next()?).map_err(invalid)?,
                ThrottleState { tat_ns: next()? },
            ),
            TAG_FIXED => Self::Fixed(
                FixedWindow::new(next()?, next()?).map_err(invalid)?,
                WindowCount {
                    end_ms: next()?,
                    count: next()?,
                },
            ),
            TAG_SLIDING => {
                let policy = SlidingWindow::new(next()?, next()?).map_err(invalid)?;
                let first_ms = next()?;
                let log = SlidingLog::from_parts(first_ms, reader.rest().to_vec())
                    .map_err(DecodeError)?;
                Self::Sliding(policy, Box::new(log))
            }
            TAG_SLIDING_APPROX => {
                let policy = SlidingCounter::new(next()?, next()?).map_err(invalid)?;
                Self::SlidingApprox(
                    policy,
                    WindowPair {
                        start_ms: next()?,
                        previous: next()?,
                        current: next()?,
                    },
                )
            }
            TAG_CONCURRENCY => {
                let policy = Concurrency::new(next()?, next()?).map_err(invalid)?;
                let count = next()?;
                let mut held = Vec::new();
                for _ in 0..count.min(crate::concurrency::MAX_LEASES + 1) {
                    let expires_ms = reader.varint().map_err(DecodeError)?;
                    let len = usize::try_from(reader.varint().map_err(DecodeError)?)
                        .map_err(|_| DecodeError("lease id too long"))?;
                    let id = reader.take(len).map_err(DecodeError)?;
                    held.push(Lease {
                        expires_ms,
                        id: id.into(),
                    });
                }
                Self::Concurrency(
                    policy,
                    Box::new(Leases::from_leases(held).map_err(DecodeError)?),
                )
            }
            TAG_USAGE => {
                let shape = UsageShape::new(next()?, next()?).map_err(invalid)?;
                let newest_ms = next()?;
                let count = next()?;
                if count > MAX_USAGE_BUCKETS {
                    return Err(DecodeError("a usage counter no command can produce"));
                }
                let mut amounts = Vec::new();
                for _ in 0..count {
                    amounts.push(reader.varint().map_err(DecodeError)?);
                }
                let counted =
                    UsageBuckets::from_parts(&shape, newest_ms, amounts).map_err(DecodeError)?;
                Self::Usage(shape, Box::new(counted))
            }
            _ => return Err(DecodeError("unknown algorithm")),
        };
        if !reader.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        if limiter.latest_ms() > MAX_TIME_MS {
            return Err(DecodeError("a time beyond the year 5000"));
        }
        limiter.check_counts()?;
        Ok(limiter)
    }
}

/// The latest absolute time a stored state may hold, in Unix milliseconds (10^14, in
/// the year 5138): every time computed from a state then fits, unsaturated, in replies.
pub const MAX_TIME_MS: u64 = 100_000_000_000_000;

impl Limiter {
    /// Refuses counts no command can store: usage above the policy's limit (an exact log
    /// also stays within the 2^20 entries its limit allows), a token-bucket deficit
    /// deeper than a full bucket plus the most `MAXWAIT` borrows, an APPROX window not
    /// aligned to its length.
    fn check_counts(&self) -> Result<(), DecodeError> {
        let valid = match self {
            Self::TokenBucket(p, s) => p.holds(s),
            // A usage counter is checked whole by `UsageBuckets::from_parts`.
            Self::Throttle(..) | Self::Concurrency(..) | Self::Usage(..) => true,
            Self::Fixed(p, s) => s.count <= p.limit(),
            Self::Sliding(p, log) => log.total() <= p.limit(),
            Self::SlidingApprox(p, s) => {
                s.previous <= p.limit() && s.current <= p.limit() && s.start_ms % p.window_ms() == 0
            }
        };
        if valid {
            Ok(())
        } else {
            Err(DecodeError("a state no command can produce"))
        }
    }

    /// The latest absolute time in this limiter's state, in Unix milliseconds.
    fn latest_ms(&self) -> u64 {
        match self {
            Self::TokenBucket(_, s) => s.at.as_micros() / 1_000,
            Self::Throttle(_, s) => s.tat_ns / 1_000_000,
            Self::Fixed(_, s) => s.end_ms,
            // `from_parts` sums the deltas without overflow: the newest entry's time.
            Self::Sliding(_, log) => log.last_ms(),
            Self::SlidingApprox(_, s) => s.start_ms,
            Self::Usage(_, counted) => counted.newest_ms(),
            Self::Concurrency(_, leases) => leases
                .held()
                .iter()
                .map(|lease| lease.expires_ms)
                .max()
                .unwrap_or(0),
        }
    }
}

/// Appends the algorithm tag and the numbers as varints.
fn put_all(out: &mut impl Sink, tag: u8, numbers: &[u64]) {
    out.push(tag);
    for &n in numbers {
        varint::put(out, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The policy a command would decide `limiter` with.
    fn limiter_policy(limiter: &Limiter) -> Option<crate::Policy> {
        use crate::Policy;
        Some(match limiter {
            Limiter::TokenBucket(p, _) => Policy::TokenBucket(*p),
            Limiter::Throttle(p, _) => Policy::Throttle(*p),
            Limiter::Fixed(p, _) => Policy::Fixed(*p),
            Limiter::Sliding(p, _) => Policy::Sliding(*p),
            Limiter::SlidingApprox(p, _) => Policy::SlidingApprox(*p),
            Limiter::Concurrency(..) | Limiter::Usage(..) => return None,
        })
    }

    #[test]
    fn rejects_times_beyond_the_year_5000() {
        let window = |start_ms: u64| {
            let limiter = Limiter::SlidingApprox(
                SlidingCounter::new(1, 1_000).unwrap(),
                WindowPair {
                    start_ms,
                    previous: 0,
                    current: 1,
                },
            );
            Limiter::decode(&limiter.encode())
        };
        assert!(window(MAX_TIME_MS).is_ok());
        assert_eq!(
            window(MAX_TIME_MS + 1),
            Err(DecodeError("a time beyond the year 5000"))
        );
        assert!(window(u64::MAX).is_err());
    }

    #[test]
    fn rejects_states_no_command_can_produce() {
        let refused = Err(DecodeError("a state no command can produce"));
        let bucket = TokenBucket::new(3, 1, 1_000).unwrap();
        let locked = Limiter::TokenBucket(
            bucket,
            BucketState {
                deficit: u64::MAX,
                at: Timestamp::from_millis(1_000),
            },
        );
        assert_eq!(Limiter::decode(&locked.encode()), refused);
        let fixed = Limiter::Fixed(
            FixedWindow::new(5, 1_000).unwrap(),
            WindowCount {
                end_ms: 2_000,
                count: 6,
            },
        );
        assert_eq!(Limiter::decode(&fixed.encode()), refused);
        let mut entries = Vec::new();
        for _ in 0..3 {
            varint::put(&mut entries, 0);
            varint::put(&mut entries, 1);
        }
        let log = SlidingLog::from_parts(1_000, entries).unwrap();
        let sliding = Limiter::Sliding(SlidingWindow::new(2, 1_000).unwrap(), Box::new(log));
        assert_eq!(
            Limiter::decode(&sliding.encode()),
            refused,
            "3 entries, limit 2"
        );
        let unaligned = Limiter::SlidingApprox(
            SlidingCounter::new(5, 1_000).unwrap(),
            WindowPair {
                start_ms: 1_500,
                previous: 0,
                current: 1,
            },
        );
        assert_eq!(Limiter::decode(&unaligned.encode()), refused);
    }

    #[test]
    fn rejects_what_it_did_not_write() {
        assert!(Limiter::decode(&[]).is_err());
        assert!(Limiter::decode(&[2, 1]).is_err());
        assert!(Limiter::decode(&[1, 9]).is_err());
        assert!(
            Limiter::decode(&[1, 1, 0, 1, 1, 0, 0]).is_err(),
            "capacity 0"
        );
        assert!(
            Limiter::decode(&[1, 1, 1, 1, 1, 0, 0, 0]).is_err(),
            "trailing byte"
        );
        assert!(
            Limiter::decode(&[1, 2, 0, 1, 1, 0x80]).is_err(),
            "truncated varint"
        );
        let overlong = [
            1, 2, 0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(Limiter::decode(&overlong).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(limiter) = Limiter::decode(&bytes) {
                let encoded = limiter.encode();
                let mut buffer = [0u8; 64];
                let len = limiter.encode_into(&mut buffer);
                prop_assert_eq!(len.map(|len| &buffer[..len]), Some(&encoded[..]));
                prop_assert_eq!(limiter.encode_into(&mut buffer[..encoded.len() - 1]), None);
                prop_assert_eq!(Limiter::decode(&encoded), Ok(limiter));
            }
        }

        #[test]
        fn any_stored_numbers_decide_without_panic(
            tag in 1u8..=7,
            numbers in proptest::collection::vec(prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(u64::MAX / 1_000), any::<u64>()], 8),
            tail in proptest::collection::vec(any::<u8>(), 0..6),
            now in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
            cost in prop_oneof![Just(0u64), Just(1), Just(u64::MAX), any::<u64>()],
        ) {
            // Policies that decode are valid; states may hold any numbers (a client can
            // send RL.SETSTATE anything): deciding on them must never panic or overflow.
            let mut bytes = vec![ENCODING_VERSION, tag];
            let count = [5, 4, 4, 3, 5, 3, 4][usize::from(tag - 1)];
            for n in &numbers[..count] {
                varint::put(&mut bytes, *n);
            }
            for with_tail in [false, true] {
                let mut candidate = bytes.clone();
                if with_tail {
                    candidate.extend_from_slice(&tail);
                }
                if let Ok(limiter) = Limiter::decode(&candidate) {
                    let now = Timestamp::from_micros(now);
                    let _ = limiter.status(now);
                    let _ = limiter.idle_at();
                    for policy in [limiter_policy(&limiter)].into_iter().flatten() {
                        let request = crate::Request { cost, peek: false, max_wait_ms: 0 };
                        let _ = policy.decide(Some(&limiter), now, request);
                    }
                }
            }
        }

        #[test]
        fn throttles_round_trip(burst in 0u64..1_000, count in 1u64..1_000, period in 1u64..100_000, tat in any::<u64>()) {
            let limiter = Limiter::Throttle(Throttle::new(burst, count, period).unwrap(), ThrottleState { tat_ns: tat });
            prop_assert_eq!(Limiter::decode(&limiter.encode()), Ok(limiter));
        }
    }
}
