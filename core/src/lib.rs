//! The rate-limiting algorithms of redlimit, pure: no Redis, no async, no clock reads.
//!
//! A caller reads its clock once, looks up the stored [`Limiter`] (if any), and asks a
//! [`Policy`] to decide a [`Request`]. It gets back a [`Decision`] and, when the request
//! changed something, the new limiter to store. The Redis module and the client's
//! in-memory fallback both run exactly this code.
//!
//! ```
//! use redlimit_core::{Policy, Request, RetryAfter, Timestamp, TokenBucket};
//!
//! // 3 tokens, one more every second.
//! let policy = Policy::TokenBucket(TokenBucket::new(3, 1, 1_000).unwrap());
//! let mut now = Timestamp::from_millis(1_700_000_000_000);
//! let mut stored = None;
//! for _ in 0..3 {
//!     let outcome = policy.decide(stored.as_ref(), now, Request::new(1)).unwrap();
//!     assert!(outcome.decision.allowed);
//!     stored = outcome.update;
//! }
//! let denied = policy.decide(stored.as_ref(), now, Request::new(1)).unwrap();
//! assert!(!denied.decision.allowed);
//! let RetryAfter::After(wait) = denied.decision.retry_after else { unreachable!() };
//! assert_eq!(wait.as_millis(), 1_000);
//! now = now.plus_micros(1_000_000);
//! assert!(policy.decide(stored.as_ref(), now, Request::new(1)).unwrap().decision.allowed);
//! ```

mod adjust;
mod all;
mod concurrency;
mod constructors;
mod decision;
mod encoding;
mod error;
mod fixed_window;
mod limiter;
mod reserve;
mod sliding_counter;
mod sliding_log;
mod throttle;
mod time;
mod token_bucket;
mod usage;
mod varint;

pub use adjust::Adjustment;
pub use all::{
    AllOutcome, AllRequest, MAX_ALL_LIMITS, check_all_max_wait, decide_all, decide_each,
};
pub use concurrency::{Concurrency, Lease, Leases, MAX_LEASE_ID_LEN, MAX_LEASES};
pub use decision::{Decision, Outcome, Request, RetryAfter};
pub use encoding::{DecodeError, ENCODING_VERSION, MAX_TIME_MS};
pub use error::{ArgumentError, MAX_COUNT, MAX_DURATION_MS};
pub use fixed_window::{FixedWindow, WindowCount};
pub use limiter::{Algorithm, Limiter, Policy, WrongAlgorithm};
pub use sliding_counter::{SlidingCounter, WindowPair};
pub use sliding_log::{MAX_SLIDING_LIMIT, SlidingLog, SlidingWindow};
pub use throttle::{Throttle, ThrottleState, redis_cell_seconds};
pub use time::{Timestamp, ceil_millis};
pub use token_bucket::{BucketState, TokenBucket};
pub use usage::{
    MAX_USAGE_AMOUNT, MAX_USAGE_BUCKETS, MAX_USAGE_RECORD, Recorded, ShapeMismatch, UsageBuckets,
    UsageError, UsageShape,
};
