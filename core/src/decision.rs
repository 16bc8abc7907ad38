//! What a limiter answers for one request.

use core::time::Duration;

/// When a request may proceed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// Right away.
    Now,
    /// After this long: a denied request may be retried then, or an admitted
    /// reservation (`MAXWAIT`) may act then.
    After(Duration),
    /// Never: the cost is larger than the policy can ever grant.
    Never,
}

/// One decision of a limiter, the same for every algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The request may proceed (and was counted, unless it was a peek).
    pub allowed: bool,
    /// The policy's capacity or limit.
    pub limit: u64,
    /// Whole units still available after this request.
    pub remaining: u64,
    /// When this request (or a retry of it, if denied) may proceed.
    pub retry_after: RetryAfter,
    /// Time until the limiter is back to its fully-available state.
    pub reset_after: Duration,
}

/// A request against a limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Units this request takes; zero only asks.
    pub cost: u64,
    /// Answer without changing anything.
    pub peek: bool,
    /// Token bucket only: admit by borrowing tokens that arrive within this many
    /// milliseconds (zero: never borrow).
    pub max_wait_ms: u64,
}

impl Request {
    /// Checks a request's cost as the argument `argument` (`COST`, `quantity`): at most
    /// [`MAX_COUNT`](crate::MAX_COUNT), the largest limit of any policy.
    ///
    /// # Errors
    /// A cost above 2^62.
    ///
    /// ```
    /// use redlimit_core::Request;
    /// assert_eq!(Request::check_cost("COST", 5), Ok(5));
    /// assert_eq!(
    ///     Request::check_cost("COST", u64::MAX).unwrap_err().to_string(),
    ///     "COST must be at most 4611686018427387904"
    /// );
    /// ```
    pub fn check_cost(argument: &'static str, cost: u64) -> Result<u64, crate::ArgumentError> {
        crate::error::at_most(argument, cost, crate::MAX_COUNT)
    }

    /// A request of `cost` units that counts if allowed.
    #[must_use]
    pub const fn new(cost: u64) -> Self {
        Self {
            cost,
            peek: false,
            max_wait_ms: 0,
        }
    }

    /// True when this request must not change the state: a peek or a zero cost.
    #[must_use]
    pub const fn is_read_only(&self) -> bool {
        self.peek || self.cost == 0
    }
}

impl Default for Request {
    fn default() -> Self {
        Self::new(1)
    }
}

/// A decision and, when the request changed the limiter, its new state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome<S> {
    /// The answer to the request.
    pub decision: Decision,
    /// The state to store: `None` when nothing changed (denied, peek, zero cost).
    pub update: Option<S>,
}

impl<S> Outcome<S> {
    /// The same decision with the update, if any, turned into another type.
    pub fn map<T>(self, f: impl FnOnce(S) -> T) -> Outcome<T> {
        Outcome {
            decision: self.decision,
            update: self.update.map(f),
        }
    }
}
