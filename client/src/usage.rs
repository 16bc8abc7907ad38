//! Usage counters for reporting: how much a key spent per bucket of time ("tokens spent
//! by user X on provider Y, per hour for the last 24 h"), kept in a fixed ring of
//! buckets per key (`RL.USAGE.ADD`, `RL.USAGE`), expiring by themselves.
//!
//! Reporting is not admission: a counter never refuses anything, and a record that
//! cannot reach the server is an error, never answered by the [`FailurePolicy`]
//! (a usage report must not count what it did not store, nor lose it silently).
//!
//! [`FailurePolicy`]: crate::FailurePolicy

use crate::error::{Error, ErrorKind, Result};
use crate::{RateLimiter, local, protocol};
use redis::{Cmd, Value};
use redlimit_core::{MAX_USAGE_RECORD, UsageError, UsageShape};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One bucket of a usage counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UsageBucket {
    /// When the bucket starts, in Unix milliseconds (buckets are aligned to the epoch).
    pub start_ms: u64,
    /// The amount recorded in it (saturating at `i64::MAX`).
    pub amount: u64,
}

impl UsageBucket {
    /// When the bucket starts.
    #[must_use]
    pub fn start(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.start_ms)
    }
}

impl RateLimiter {
    /// Adds `amount` to the usage counter `key` (a ring of `shape.buckets()` buckets of
    /// `shape.bucket_ms()` each; `RL.USAGE.ADD`) and returns the total over the ring
    /// afterwards. An amount of 0 only reads that total. The key expires by itself
    /// when its newest bucket leaves the ring.
    ///
    /// ```
    /// use redlimit::{RateLimiter, UsageShape};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let limiter = RateLimiter::memory();
    /// let day_by_hour = UsageShape::hourly(24)?;
    /// limiter.record_usage("usage:{user:42}:openai", 1_200, &day_by_hour).await?;
    /// let total = limiter.record_usage("usage:{user:42}:openai", 300, &day_by_hour).await?;
    /// assert_eq!(total, 1_500);
    /// let report = limiter.usage("usage:{user:42}:openai").await?;
    /// assert_eq!(report.len(), 24, "one bucket per hour, the current hour last");
    /// assert_eq!(report.iter().map(|bucket| bucket.amount).sum::<u64>(), 1_500);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// An amount above 2^62; a key holding a limiter or another type
    /// ([`ErrorKind::WrongType`]) or a counter of another shape
    /// ([`ErrorKind::InvalidArgument`], naming both shapes); the server unavailable
    /// (whatever the failure policy: nothing was recorded).
    pub async fn record_usage(
        &self,
        key: impl AsRef<[u8]>,
        amount: u64,
        shape: &UsageShape,
    ) -> Result<u64> {
        let key = key.as_ref();
        if amount > MAX_USAGE_RECORD {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("amount must be at most {MAX_USAGE_RECORD}"),
            ));
        }
        let Some(remote) = self.remote() else {
            let now = local::now();
            return self.shared.local.update(key, now, |stored| {
                let recorded = shape.record(stored, now, amount)?;
                Ok((recorded.total, recorded.update))
            });
        };
        let cmd = record_command(key, amount, shape);
        self.call(remote, "record_usage", &cmd, None, protocol::count)
            .await
    }

    /// Every bucket of the usage counter `key` (`RL.USAGE`), oldest first: one per
    /// bucket of its ring, the last one being the bucket of now, zeros included. Empty
    /// for an absent or expired key.
    ///
    /// # Errors
    /// A key holding a limiter or another type ([`ErrorKind::WrongType`]); the server
    /// unavailable (whatever the failure policy).
    pub async fn usage(&self, key: impl AsRef<[u8]>) -> Result<Vec<UsageBucket>> {
        let key = key.as_ref();
        let Some(remote) = self.remote() else {
            let now = local::now();
            return match self.shared.local.get(key, now) {
                None => Ok(Vec::new()),
                Some(redlimit_core::Limiter::Usage(shape, counted)) => Ok(shape
                    .read(&counted, now)
                    .into_iter()
                    .map(|(start_ms, amount)| UsageBucket { start_ms, amount })
                    .collect()),
                Some(other) => Err(redlimit_core::WrongAlgorithm {
                    stored: other.algorithm(),
                }
                .into()),
            };
        };
        let mut cmd = redis::cmd("RL.USAGE");
        cmd.arg(key);
        self.call(remote, "usage", &cmd, None, parse_usage).await
    }
}

/// `RL.USAGE.ADD key amount bucket_ms buckets`.
fn record_command(key: &[u8], amount: u64, shape: &UsageShape) -> Cmd {
    let mut cmd = redis::cmd("RL.USAGE.ADD");
    cmd.arg(key)
        .arg(amount)
        .arg(shape.bucket_ms())
        .arg(shape.buckets());
    cmd
}

/// `RL.USAGE`'s reply: a flat array of `bucket_start_ms, amount` pairs, RESP2 and RESP3
/// alike. Anything else is a protocol error.
fn parse_usage(value: &Value) -> Result<Vec<UsageBucket>> {
    let unreadable = || {
        Error::new(
            ErrorKind::Protocol,
            format!("expected bucket_start_ms, amount pairs, the server sent {value:?}"),
        )
    };
    let Value::Array(items) = value else {
        return Err(unreadable());
    };
    if items.len() % 2 != 0 {
        return Err(unreadable());
    }
    items
        .chunks_exact(2)
        .map(|pair| match pair {
            [start, amount] => Ok(UsageBucket {
                start_ms: protocol::count(start)?,
                amount: protocol::count(amount)?,
            }),
            _ => Err(unreadable()),
        })
        .collect()
}

impl From<UsageError> for Error {
    fn from(error: UsageError) -> Self {
        match error {
            UsageError::WrongAlgorithm(wrong) => wrong.into(),
            UsageError::Shape(mismatch) => {
                Self::new(ErrorKind::InvalidArgument, mismatch.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_replies_read_as_pairs_and_nothing_else() {
        let reply = Value::Array(vec![
            Value::Int(3_600_000),
            Value::Int(0),
            Value::Int(7_200_000),
            Value::Int(42),
        ]);
        assert_eq!(
            parse_usage(&reply).unwrap(),
            [
                UsageBucket {
                    start_ms: 3_600_000,
                    amount: 0
                },
                UsageBucket {
                    start_ms: 7_200_000,
                    amount: 42
                }
            ]
        );
        assert_eq!(parse_usage(&Value::Array(vec![])).unwrap(), []);
        for bad in [
            Value::Array(vec![Value::Int(1)]),
            Value::Array(vec![Value::Int(1), Value::Int(-2)]),
            Value::Nil,
            Value::Int(3),
        ] {
            assert_eq!(parse_usage(&bad).unwrap_err().kind(), ErrorKind::Protocol);
        }
    }
}
