//! The answer to an over-limit request: 429, `Retry-After`, and an RFC 9457 problem.

use super::headers::ceil_secs;
use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use std::sync::Arc;
use std::time::Duration;

/// What the middleware knows when it refuses a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limited {
    /// The rule that refused it.
    pub rule: String,
    /// The names of its limits that refused it; empty when the request was refused
    /// because the limits could not be checked ([`unavailable`](Self::unavailable)).
    pub violated_policies: Vec<String>,
    /// How long until a retry can succeed; `None` if the request can never fit.
    pub retry_after: Option<Duration>,
    /// Refused by the fail-closed policy because the server could not decide, not
    /// because a limit was reached (the default answer is then a 503).
    pub unavailable: bool,
}

/// Builds the response to an over-limit request. The middleware adds `Retry-After`
/// and the rate-limit headers afterwards.
pub type RejectionFn = Arc<dyn Fn(&Limited) -> Response<Body> + Send + Sync>;

/// The problem type registered by the rate-limit headers draft.
pub const QUOTA_EXCEEDED: &str = "https://iana.org/assignments/http-problem-types#quota-exceeded";

/// The problem type of an answer made while the limits could not be checked.
pub const TEMPORARY_REDUCED_CAPACITY: &str =
    "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity";

/// The default answer: 429 with an `application/problem+json` body of type
/// [`QUOTA_EXCEEDED`] naming the `violated-policies`; when the fail-closed policy
/// refused because the server could not decide, 503 of type
/// [`TEMPORARY_REDUCED_CAPACITY`] without `violated-policies` (nothing was violated: the
/// limits could not be checked), so that clients can tell an outage from their own
/// excess.
#[must_use]
pub fn problem(limited: &Limited) -> Response<Body> {
    let retry = limited.retry_after.map(ceil_secs);
    let (status, kind, title) = if limited.unavailable {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            TEMPORARY_REDUCED_CAPACITY,
            "Request cannot be satisfied as the rate limits cannot be checked now",
        )
    } else {
        (
            StatusCode::TOO_MANY_REQUESTS,
            QUOTA_EXCEEDED,
            "Request cannot be satisfied as assigned quota has been exceeded",
        )
    };
    let detail = match (retry, limited.unavailable) {
        (Some(secs), true) => format!("Limits cannot be checked now; retry in {secs} s."),
        (Some(secs), false) => format!("Too many requests; retry in {secs} s."),
        (None, _) => "This request is larger than the limit allows.".to_owned(),
    };
    let mut body = serde_json::json!({
        "type": kind,
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
        "retry-after": retry,
    });
    if !limited.unavailable {
        body["violated-policies"] = serde_json::json!(limited.violated_policies);
    }
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// Adds `Retry-After` (whole seconds, rounded up) unless the request can never fit.
pub(crate) fn retry_after(response: &mut Response<Body>, limited: &Limited) {
    if let Some(wait) = limited.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(ceil_secs(wait)));
    }
}
