//! Limits that count only some outcomes (`count_when`, Flask-Limiter's `deduct_when`):
//! peeked before the handler (a caller over the limit is refused, nothing counted),
//! counted after it by the response's status, without delaying the response.

use super::headers::RateHeaders;
use http::StatusCode;
use std::sync::Arc;

/// Whether a response counts, by its status.
#[derive(Clone)]
pub(crate) struct CountWhen(pub(crate) Arc<dyn Fn(StatusCode) -> bool + Send + Sync>);

impl std::fmt::Debug for CountWhen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CountWhen")
    }
}

/// What is left to do once the handler has answered a request of a `count_when` rule.
pub(crate) struct Deferred {
    pub(crate) when: CountWhen,
    /// The headers of a response that does not count (the verdict's are those of one
    /// that does).
    pub(crate) uncounted: Option<RateHeaders>,
    /// Counts the request (spawned: the response does not wait).
    pub(crate) count: Box<dyn FnOnce() + Send>,
}

impl Deferred {
    /// The headers for a response of `status`, after counting it if it counts.
    pub(crate) fn settle(
        self,
        status: StatusCode,
        counted: Option<RateHeaders>,
    ) -> Option<RateHeaders> {
        if (self.when.0)(status) {
            (self.count)();
            counted
        } else {
            self.uncounted
        }
    }
}
