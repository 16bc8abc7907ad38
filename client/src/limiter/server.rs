//! The server call under the timeout and the circuit breaker, what a failed call logs,
//! and [`RateLimiter::verify`].

use super::RateLimiter;
use crate::backend::Remote;
use crate::breaker::Admit;
use crate::error::{Error, ErrorKind, Result};
use crate::observe;
use crate::verify::{BackendInfo, Engine};
use redis::{Cmd, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// No lasting trouble logged.
pub(super) const NO_TROUBLE: u8 = 0;
/// The module is missing: logged when it began.
const MODULE_MISSING: u8 = 1;
/// The replies are unreadable: logged when it began.
const UNREADABLE: u8 = 2;

impl RateLimiter {
    /// Sends `cmd` under the timeout and the circuit breaker, and reads the reply with
    /// `parse`: a reply it cannot read is a failure of the server like a timeout (the
    /// failure policy answers, the breaker counts it), never a decision.
    pub(crate) async fn call<T>(
        &self,
        remote: &Remote,
        operation: &'static str,
        cmd: &Cmd,
        slot: Option<u16>,
        parse: impl FnOnce(&Value) -> Result<T>,
    ) -> Result<T> {
        let shared = &self.shared;
        // A closed breaker without failures (the usual state) is read without its lock
        // and without the clock.
        if !shared.breaker.is_quiet() {
            if let Admit::Skip(until) = shared.breaker.admit(Instant::now()) {
                let left = until.saturating_duration_since(Instant::now());
                return Err(Error::new(
                    ErrorKind::CircuitOpen,
                    format!(
                        "the server failed repeatedly; next attempt in {} ms",
                        left.as_millis()
                    ),
                ));
            }
        }
        let result = tokio::time::timeout(shared.timeout, remote.query(cmd, slot, shared.timeout))
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer within {} ms", shared.timeout.as_millis()),
                ))
            })
            .and_then(|value| parse(&value))
            .map_err(|error| match error.kind() {
                ErrorKind::ModuleNotLoaded => error.on_node(&remote.node_name()),
                _ => error,
            });
        match &result {
            Err(error) if error.is_backend_failure() && !error.is_redirect() => {
                if error.breaks_connection() {
                    remote.disconnect();
                }
                self.backend_error(operation, error);
                if let Some(change) = shared.breaker.failure(Instant::now()) {
                    observe::breaker(change, shared.cool_down);
                }
            }
            // The server answered (perhaps with an error reply): it is up.
            _ => {
                if shared.trouble.load(Ordering::Relaxed) != NO_TROUBLE {
                    let ended = shared.trouble.swap(NO_TROUBLE, Ordering::Relaxed);
                    if ended != NO_TROUBLE {
                        observe::trouble_ended(ended == MODULE_MISSING);
                    }
                }
                if let Some(change) = shared.breaker.success() {
                    observe::breaker(change, shared.cool_down);
                }
            }
        }
        result
    }

    /// Counts a failed call, and logs it: every time for a passing failure (a timeout, a
    /// refused connection: the breaker soon stops the calls), once for lasting trouble
    /// (the module missing, unreadable replies) until a call succeeds again.
    fn backend_error(&self, operation: &'static str, error: &Error) {
        let trouble = match error.kind() {
            ErrorKind::ModuleNotLoaded => MODULE_MISSING,
            ErrorKind::Protocol => UNREADABLE,
            _ => NO_TROUBLE,
        };
        let began = trouble != NO_TROUBLE
            && self.shared.trouble.swap(trouble, Ordering::Relaxed) != trouble;
        observe::backend_error(operation, error, trouble == NO_TROUBLE || began);
    }

    /// Checks, now, that the limits can be decided: that every server this limiter
    /// decides on has the redlimit module loaded (the server; the primary Sentinel
    /// names; every primary of a cluster), or, with the script engine
    /// ([`ServerEngine`](crate::ServerEngine)), that the script loads there; the answer
    /// says which engine decides. Call it at startup: a server without the
    /// module answers `ERR unknown command 'RL.…'` to every decision, which the
    /// [`FailurePolicy`](crate::FailurePolicy) then answers (closed: every request
    /// denied; open: every request allowed) until the module is loaded.
    ///
    /// Replicas are not reached (the client never connects to them): load the module
    /// on them too, or a failover promotes a server where the failure policy answers
    /// every decision (logged once, as an error, when it begins).
    ///
    /// Waits for each answer at most the [timeout](crate::Builder::timeout) or 2 s,
    /// whichever is longer; the circuit breaker is neither consulted nor changed.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), redlimit::Error> {
    /// use redlimit::{Backend, RateLimiter};
    /// let limiter = RateLimiter::builder(Backend::redis("redis://127.0.0.1:6379")?).build()?;
    /// let info = limiter.verify().await?; // "the redlimit module is not loaded on ..."
    /// println!("redlimit module {:?} on {:?}", info.module_version(), info.nodes);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::ModuleNotLoaded`] naming every server without the module; the
    /// server unreachable ([`Error::is_unavailable`]); an answer this crate cannot read.
    pub async fn verify(&self) -> Result<BackendInfo> {
        let Some(remote) = self.remote() else {
            return Ok(BackendInfo {
                engine: Engine::Memory,
                nodes: Vec::new(),
            });
        };
        let timeout = self.shared.timeout.max(Duration::from_secs(2));
        let (engine, nodes) = crate::engine::verify(remote, timeout)
            .await
            .map_err(|error| {
                if error.is_module_not_loaded() {
                    error
                } else {
                    let node = remote.node_name();
                    error.context(&format!("checking the redlimit module on {node}"))
                }
            })?;
        Ok(BackendInfo { engine, nodes })
    }

    /// Whether the circuit breaker is open now (the server left alone for a cool-down);
    /// read by [`health`](Self::health).
    pub(crate) fn breaker_open(&self) -> bool {
        self.shared.breaker.is_open(Instant::now())
    }
}
