//! The stored encoding of a limiter: versioned, compact, validated on the way in.
//!
//! Layout: a version byte, an algorithm byte, then the policy's numbers and the
//! state's numbers as unsigned LEB128 varints. The same bytes are written to RDB,
//! carried by replication and AOF (`RL.SETSTATE`), and read back by every loader.

use crate::limiter::Limiter;
use crate::throttle::{Throttle, ThrottleState};
use crate::time::Timestamp;
use crate::token_bucket::{BucketState, TokenBucket};
use core::fmt;

/// The encoding version this build writes.
pub const ENCODING_VERSION: u8 = 1;

const TAG_TOKEN_BUCKET: u8 = 1;
const TAG_THROTTLE: u8 = 2;

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
        match self {
            Self::TokenBucket(policy, state) => {
                out.push(TAG_TOKEN_BUCKET);
                for n in [
                    policy.capacity(),
                    policy.refill_tokens(),
                    policy.refill_ms(),
                    state.deficit,
                    state.at.as_micros(),
                ] {
                    put_varint(&mut out, n);
                }
            }
            Self::Throttle(policy, state) => {
                out.push(TAG_THROTTLE);
                for n in [
                    policy.max_burst(),
                    policy.count(),
                    policy.period_s(),
                    state.tat_ns,
                ] {
                    put_varint(&mut out, n);
                }
            }
        }
        out
    }

    /// Reads a limiter back, checking every policy number as a command would.
    ///
    /// # Errors
    /// Unknown version or algorithm, truncated or trailing bytes, an invalid policy.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader(bytes);
        if reader.byte()? != ENCODING_VERSION {
            return Err(DecodeError("unknown encoding version"));
        }
        let limiter = match reader.byte()? {
            TAG_TOKEN_BUCKET => {
                let policy = TokenBucket::new(reader.varint()?, reader.varint()?, reader.varint()?)
                    .map_err(|_| DecodeError("invalid token bucket policy"))?;
                let state = BucketState {
                    deficit: reader.varint()?,
                    at: Timestamp::from_micros(reader.varint()?),
                };
                Self::TokenBucket(policy, state)
            }
            TAG_THROTTLE => {
                let policy = Throttle::new(reader.varint()?, reader.varint()?, reader.varint()?)
                    .map_err(|_| DecodeError("invalid throttle policy"))?;
                Self::Throttle(
                    policy,
                    ThrottleState {
                        tat_ns: reader.varint()?,
                    },
                )
            }
            _ => return Err(DecodeError("unknown algorithm")),
        };
        if !reader.0.is_empty() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(limiter)
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&first, rest) = self.0.split_first().ok_or(DecodeError("truncated"))?;
        self.0 = rest;
        Ok(first)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(DecodeError("varint overflows 64 bits"));
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint overflows 64 bits"))
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
        fn varints_round_trip(n in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, n);
            prop_assert_eq!(Reader(&out).varint(), Ok(n));
        }

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
