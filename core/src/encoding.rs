//! The stored encoding of a limiter: versioned, compact, validated on the way in.
//!
//! Layout: a version byte, an algorithm byte, then the policy's numbers and the
//! state's numbers as unsigned LEB128 varints. The same bytes are written to RDB,
//! carried by replication and AOF (`RL.SETSTATE`), and read back by every loader.

use crate::fixed_window::{FixedWindow, WindowCount};
use crate::limiter::Limiter;
use crate::sliding_counter::{SlidingCounter, WindowPair};
use crate::sliding_log::{SlidingLog, SlidingWindow};
use crate::throttle::{Throttle, ThrottleState};
use crate::time::Timestamp;
use crate::token_bucket::{BucketState, TokenBucket};
use crate::varint::{self, Reader};
use core::fmt;

/// The encoding version this build writes.
pub const ENCODING_VERSION: u8 = 1;

const TAG_TOKEN_BUCKET: u8 = 1;
const TAG_THROTTLE: u8 = 2;
const TAG_FIXED: u8 = 3;
const TAG_SLIDING: u8 = 4;
const TAG_SLIDING_APPROX: u8 = 5;

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
        let mut out = Vec::with_capacity(32);
        out.push(ENCODING_VERSION);
        let (tag, numbers) = match self {
            Self::TokenBucket(p, s) => (
                TAG_TOKEN_BUCKET,
                vec![
                    p.capacity(),
                    p.refill_tokens(),
                    p.refill_ms(),
                    s.deficit,
                    s.at.as_micros(),
                ],
            ),
            Self::Throttle(p, s) => (
                TAG_THROTTLE,
                vec![p.max_burst(), p.count(), p.period_s(), s.tat_ns],
            ),
            Self::Fixed(p, s) => (TAG_FIXED, vec![p.limit(), p.window_ms(), s.end_ms, s.count]),
            Self::Sliding(p, log) => (TAG_SLIDING, vec![p.limit(), p.window_ms(), log.first_ms()]),
            Self::SlidingApprox(p, s) => (
                TAG_SLIDING_APPROX,
                vec![p.limit(), p.window_ms(), s.start_ms, s.previous, s.current],
            ),
        };
        out.push(tag);
        for n in numbers {
            varint::put(&mut out, n);
        }
        if let Self::Sliding(_, log) = self {
            out.extend_from_slice(log.entries());
        }
        out
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
            _ => return Err(DecodeError("unknown algorithm")),
        };
        if !reader.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(limiter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
                prop_assert_eq!(Limiter::decode(&limiter.encode()), Ok(limiter));
            }
        }

        #[test]
        fn throttles_round_trip(burst in 0u64..1_000, count in 1u64..1_000, period in 1u64..100_000, tat in any::<u64>()) {
            let limiter = Limiter::Throttle(Throttle::new(burst, count, period).unwrap(), ThrottleState { tat_ns: tat });
            prop_assert_eq!(Limiter::decode(&limiter.encode()), Ok(limiter));
        }
    }
}
