//! One error type for every operation, in the style of `redis::RedisError`: opaque, with
//! a [`kind`](Error::kind) and `is_*` predicates.

use std::borrow::Cow;
use std::fmt;

/// What went wrong, broadly. New kinds may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A policy, cost, wait or lease id out of range, rejected by this crate or the
    /// server (`ERR <argument> must be ...`).
    InvalidArgument,
    /// The key holds another Redis type, or a limiter of another algorithm.
    WrongType,
    /// The server has no `RL.*` commands: the redlimit module is not loaded (a restart or
    /// a failover to a server without it). The failure policy answers decisions, as for
    /// an unavailable server; see [`RateLimiter::verify`](crate::RateLimiter::verify).
    ModuleNotLoaded,
    /// The keys of an all-or-nothing check hash to different Redis Cluster slots.
    CrossSlot,
    /// The server did not answer within the decision timeout.
    Timeout,
    /// The server could not be reached or cannot serve writes now (connection refused
    /// or dropped, loading, read-only replica, cluster down, out of memory, not enough
    /// replicas for `min-replicas-to-write`, persistence failing, ...).
    Unavailable,
    /// The circuit breaker is open after repeated failures: the server was not asked.
    CircuitOpen,
    /// Any other error reply from the server (for example an ACL `NOPERM`).
    Server,
    /// The server answered something this crate cannot read (a version mismatch?). The
    /// failure policy answers decisions: an unreadable answer is never read as allowed.
    Protocol,
}

impl ErrorKind {
    /// A short stable name, used in logs and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::WrongType => "wrong_type",
            Self::ModuleNotLoaded => "module_not_loaded",
            Self::CrossSlot => "cross_slot",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::CircuitOpen => "circuit_open",
            Self::Server => "server",
            Self::Protocol => "protocol",
        }
    }
}

/// The error of every redlimit operation.
pub struct Error {
    kind: ErrorKind,
    detail: Cow<'static, str>,
    source: Option<redis::RedisError>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            source: None,
        }
    }

    /// What went wrong.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server is down, slow or refusing writes (timeout, unavailable or circuit
    /// open): the errors a failure policy answers for.
    #[must_use]
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::CircuitOpen
        )
    }

    /// No answer within the decision timeout.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.kind == ErrorKind::Timeout
    }

    /// The circuit breaker was open.
    #[must_use]
    pub fn is_circuit_open(&self) -> bool {
        self.kind == ErrorKind::CircuitOpen
    }

    /// The redlimit module is not loaded on the server.
    #[must_use]
    pub fn is_module_not_loaded(&self) -> bool {
        self.kind == ErrorKind::ModuleNotLoaded
    }

    /// The server could not decide: it is unavailable ([`is_unavailable`](Self::is_unavailable)),
    /// lacks the module ([`is_module_not_loaded`](Self::is_module_not_loaded)) or sent an
    /// answer this crate cannot read ([`ErrorKind::Protocol`]). These are the errors a
    /// [`FailurePolicy`](crate::FailurePolicy) answers for and the circuit breaker counts;
    /// [`FailurePolicy::Error`](crate::FailurePolicy::Error) returns them.
    #[must_use]
    pub fn is_backend_failure(&self) -> bool {
        self.is_unavailable()
            || matches!(self.kind, ErrorKind::ModuleNotLoaded | ErrorKind::Protocol)
    }

    /// The same error, its detail preceded by `context` (`what: detail`).
    pub(crate) fn context(mut self, context: &str) -> Self {
        self.detail = Cow::Owned(format!("{context}: {}", self.detail));
        self
    }

    /// The same error, saying where the module is missing and what to do.
    pub(crate) fn on_node(mut self, node: &str) -> Self {
        if let (ErrorKind::ModuleNotLoaded, Some(source)) = (self.kind, &self.source) {
            self.detail = Cow::Owned(module_missing(node, &server_words(source)));
        }
        self
    }

    /// A value out of range.
    #[must_use]
    pub fn is_invalid_argument(&self) -> bool {
        self.kind == ErrorKind::InvalidArgument
    }

    /// The key holds something else.
    #[must_use]
    pub fn is_wrong_type(&self) -> bool {
        self.kind == ErrorKind::WrongType
    }

    /// Keys in different cluster slots.
    #[must_use]
    pub fn is_cross_slot(&self) -> bool {
        self.kind == ErrorKind::CrossSlot
    }

    /// The underlying `redis` error, if there was one.
    #[must_use]
    pub fn redis_error(&self) -> Option<&redis::RedisError> {
        self.source.as_ref()
    }

    /// Whether a failed connection should be dropped and made again.
    ///
    /// Yes after a timeout or a connection error, and when the server says it is not (or
    /// no longer) the primary to write to (`READONLY`, `NOREPLICAS`, `MASTERDOWN`): a new
    /// connection asks Sentinel again. No when a healthy connection carried a passing
    /// refusal (`OOM`, `BUSY`, `LOADING`, `MISCONF`, `CLUSTERDOWN`) or a redirect.
    pub(crate) fn breaks_connection(&self) -> bool {
        let passing = self.code().is_some_and(|code| {
            matches!(code, "OOM" | "BUSY" | "LOADING" | "MISCONF" | "CLUSTERDOWN")
        });
        matches!(self.kind, ErrorKind::Timeout | ErrorKind::Unavailable)
            && !passing
            && !self.is_redirect()
    }

    /// A cluster redirect the `redis` crate did not follow (`MOVED`, `ASK`, `TRYAGAIN`
    /// during a slot migration): the failure policy answers this call, but the
    /// connection is fine and the server is up, so the breaker does not count it.
    pub(crate) fn is_redirect(&self) -> bool {
        self.code()
            .is_some_and(|code| matches!(code, "MOVED" | "ASK" | "TRYAGAIN"))
    }

    fn code(&self) -> Option<&str> {
        self.source.as_ref().and_then(redis::RedisError::code)
    }
}

impl From<redlimit_core::ArgumentError> for Error {
    fn from(error: redlimit_core::ArgumentError) -> Self {
        Self::new(ErrorKind::InvalidArgument, error.to_string())
    }
}

impl From<redlimit_core::WrongAlgorithm> for Error {
    fn from(error: redlimit_core::WrongAlgorithm) -> Self {
        Self::new(ErrorKind::WrongType, error.to_string())
    }
}

impl From<redis::RedisError> for Error {
    fn from(error: redis::RedisError) -> Self {
        let kind = classify(&error);
        let detail = match kind {
            // The server's words, without the arguments it echoes (keys: user data).
            ErrorKind::ModuleNotLoaded => module_missing("the server", &server_words(&error)),
            _ => error.to_string(),
        };
        Self {
            kind,
            detail: Cow::Owned(detail),
            source: Some(error),
        }
    }
}

/// The message of [`ErrorKind::ModuleNotLoaded`]: where, what the server said, what to do.
pub(crate) fn module_missing(node: &str, said: &str) -> String {
    format!(
        "the redlimit module is not loaded on {node} (it answered: {said}): load \
         libredlimit.so there (--loadmodule or MODULE LOAD); until then the failure \
         policy answers every decision"
    )
}

/// An error reply's text without the arguments the server echoes (keys are user data).
fn server_words(error: &redis::RedisError) -> String {
    let said = error.detail().unwrap_or_default();
    let said = said.split(", with args").next().unwrap_or(said).trim();
    match error.code() {
        Some(code) => format!("{code} {said}"),
        None => said.to_owned(),
    }
}

/// Whether an `ERR` reply says that the command does not exist: Redis 7.0, 8.2 and
/// Valkey 9.1 answer `unknown command 'RL.X', with args beginning with: ...` (older
/// servers quote with backticks; proxies such as Envoy say `unsupported command`).
fn is_unknown_command(detail: &str) -> bool {
    let detail = detail.trim_start().to_ascii_lowercase();
    detail.starts_with("unknown command") || detail.starts_with("unsupported command")
}

/// Sorts a `redis` error into the kinds above.
fn classify(error: &redis::RedisError) -> ErrorKind {
    use redis::ErrorKind as R;
    if error.is_timeout() {
        return ErrorKind::Timeout;
    }
    let detail = error.detail().unwrap_or_default();
    match error.code() {
        Some("WRONGTYPE") => return ErrorKind::WrongType,
        Some("CROSSSLOT") => return ErrorKind::CrossSlot,
        Some(
            "OOM" | "BUSY" | "LOADING" | "MASTERDOWN" | "READONLY" | "CLUSTERDOWN" | "NOREPLICAS"
            | "MISCONF" | "TRYAGAIN",
        ) => {
            return ErrorKind::Unavailable;
        }
        Some("ERR") if is_unknown_command(detail) => {
            return ErrorKind::ModuleNotLoaded;
        }
        Some("ERR")
            if detail.contains(" must be ")
                || detail.starts_with("syntax error")
                || detail.starts_with("wrong number of arguments") =>
        {
            return ErrorKind::InvalidArgument;
        }
        _ => {}
    }
    match error.kind() {
        R::CrossSlot => ErrorKind::CrossSlot,
        R::IoError
        | R::BusyLoadingError
        | R::TryAgain
        | R::ClusterDown
        | R::MasterDown
        | R::ReadOnly
        | R::ClusterConnectionNotFound
        | R::MasterNameNotFoundBySentinel
        | R::NoValidReplicasFoundBySentinel
        | R::EmptySentinelList
        | R::Moved
        | R::Ask => ErrorKind::Unavailable,
        R::TypeError | R::ParseError => ErrorKind::Protocol,
        _ if error.is_io_error() || error.is_connection_dropped() => ErrorKind::Unavailable,
        _ => ErrorKind::Server,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redlimit {}: {}", self.kind.as_str(), self.detail)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|error| error as &(dyn std::error::Error + 'static))
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, detail: &str) -> Error {
        let known = [
            ("ERR", redis::ErrorKind::ResponseError),
            ("READONLY", redis::ErrorKind::ReadOnly),
            ("LOADING", redis::ErrorKind::BusyLoadingError),
            ("CROSSSLOT", redis::ErrorKind::CrossSlot),
        ];
        let error = match known.iter().find(|(name, _)| *name == code) {
            Some(&(_, kind)) => redis::RedisError::from((kind, "server", detail.to_owned())),
            None => redis::make_extension_error(code.to_owned(), Some(detail.to_owned())),
        };
        Error::from(error)
    }

    #[test]
    fn server_replies_sort_into_kinds() {
        let cases = [
            (
                "ERR",
                "unknown command 'RL.TOKENBUCKET', with args beginning with: ",
                ErrorKind::ModuleNotLoaded,
            ),
            (
                "ERR",
                "capacity must be a positive integer",
                ErrorKind::InvalidArgument,
            ),
            (
                "WRONGTYPE",
                "the key holds a sliding limiter",
                ErrorKind::WrongType,
            ),
            (
                "READONLY",
                "You can't write against a read only replica.",
                ErrorKind::Unavailable,
            ),
            (
                "LOADING",
                "Redis is loading the dataset in memory",
                ErrorKind::Unavailable,
            ),
            ("NOPERM", "User app has no permissions", ErrorKind::Server),
            (
                "NOREPLICAS",
                "Not enough good replicas to write.",
                ErrorKind::Unavailable,
            ),
            (
                "MISCONF",
                "Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
                ErrorKind::Unavailable,
            ),
            (
                "CROSSSLOT",
                "Keys in request don't hash to the same slot",
                ErrorKind::CrossSlot,
            ),
        ];
        for (code, detail, kind) in cases {
            assert_eq!(server_error(code, detail).kind(), kind, "{code} {detail}");
        }
    }

    #[test]
    fn a_missing_module_is_a_backend_failure_named_without_the_arguments() {
        // Redis 7.0.15, 8.2.3 and Valkey 9.1.2 all answer this (checked with redis-cli);
        // older servers quote with backticks, proxies say "unsupported".
        for said in [
            "unknown command 'RL.TOKENBUCKET', with args beginning with: 'user:42' '5' '1' '1000' ",
            "unknown command `RL.TOKENBUCKET`, with args beginning with: `user:42`, ",
            "unsupported command 'RL.TOKENBUCKET'",
        ] {
            let error = server_error("ERR", said);
            assert_eq!(error.kind(), ErrorKind::ModuleNotLoaded, "{said}");
            assert!(
                error.is_backend_failure() && !error.is_unavailable(),
                "{said}"
            );
            assert!(!error.breaks_connection(), "{said}");
            let text = error.on_node("127.0.0.1:6379").to_string();
            assert!(
                text.starts_with(
                    "redlimit module_not_loaded: the redlimit module is not loaded on \
                     127.0.0.1:6379 (it answered: ERR un"
                ),
                "{text}"
            );
            assert!(!text.contains("user:42"), "the key is not logged: {text}");
        }
        for (code, detail) in [
            ("WRONGTYPE", "the key holds a sliding limiter"),
            ("NOPERM", "User app has no permissions"),
            ("ERR", "capacity must be a positive integer"),
        ] {
            assert!(!server_error(code, detail).is_backend_failure(), "{code}");
        }
    }
}
