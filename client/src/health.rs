//! [`RateLimiter::health`]: is the server reachable, how fast, is the module loaded
//! (which version), is the circuit breaker open. For `/health` endpoints
//! (`redlimit::http::health` serves it).

use crate::{Engine, RateLimiter};
use std::time::{Duration, Instant};

/// What [`RateLimiter::health`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// The server answered (always true for the memory engine).
    pub reachable: bool,
    /// The module is loaded on every server checked (true for the memory engine; false
    /// where the Lua scripts decide instead).
    pub module_loaded: bool,
    /// The module's version on the first server, when known.
    pub module_version: Option<i64>,
    /// Where decisions are made.
    pub engine: Engine,
    /// How long the check took (one `MODULE LIST` per server, or `COMMAND INFO`).
    pub latency: Duration,
    /// The circuit breaker skips the server now (decisions are the failure policy's).
    pub breaker_open: bool,
    /// Why the check failed, if it did.
    pub error: Option<String>,
}

impl Health {
    /// Reachable, the module loaded (or the Lua scripts deciding in its place), and the
    /// breaker closed: decisions are the server's.
    #[must_use]
    pub fn is_healthy(&self) -> bool {
        self.reachable
            && (self.module_loaded || self.engine == Engine::Scripts)
            && !self.breaker_open
    }
}

impl RateLimiter {
    /// Checks the server now (as [`verify`](Self::verify) does) and reports, never
    /// failing: an unreachable server or a missing module is a finding, not an error.
    pub async fn health(&self) -> Health {
        let started = Instant::now();
        let verified = self.verify().await;
        let latency = started.elapsed();
        let breaker_open = self.breaker_open();
        match verified {
            Ok(info) => Health {
                reachable: true,
                module_loaded: info.engine != Engine::Scripts,
                module_version: info.module_version(),
                engine: info.engine,
                latency,
                breaker_open,
                error: None,
            },
            Err(error) => Health {
                reachable: !error.is_unavailable(),
                module_loaded: false,
                module_version: None,
                engine: Engine::Module,
                latency,
                breaker_open,
                error: Some(error.to_string()),
            },
        }
    }
}
