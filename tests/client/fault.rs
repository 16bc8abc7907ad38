//! Shared by the fault tests: limiters with a tight timeout and a short cool-down, the
//! two ways a server fails (killed, hung), and what each failure policy must answer.

use crate::support::{PROTOCOLS, Protocol, figures, start, timed};
use redlimit::{Backend, Decision, FailurePolicy, Policy, RateLimiter, Result, Source};
use redlimit_test_support::{Server, ServerBinary, ServerBuilder, TempDir};
use std::time::{Duration, Instant};

/// The decision timeout of the fault tests: the default.
pub const TIMEOUT: Duration = Duration::from_millis(50);
/// Failures in a row that open the breaker: the default.
pub const THRESHOLD: u32 = 3;
/// The breaker's cool-down, short to keep the tests short.
pub const COOL_DOWN: Duration = Duration::from_millis(500);
/// What "within the timeout plus a small margin" is asserted as on a loaded machine:
/// generous on purpose; the measured figures are printed.
pub const BOUND: Duration = Duration::from_secs(1);

pub const FAILURE_POLICIES: [FailurePolicy; 4] = [
    FailurePolicy::Open,
    FailurePolicy::Closed,
    FailurePolicy::Fallback,
    FailurePolicy::Error,
];

/// How the server fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL: connections drop, new ones are refused.
    Kill,
    /// SIGSTOP: connections stay open and new ones are accepted by the kernel, but
    /// nothing is answered.
    Hang,
}

/// A limiter on `url` with the fault tests' settings.
pub fn limiter(url: &str, failure: FailurePolicy) -> RateLimiter {
    builder(url, failure).build().unwrap()
}

pub fn builder(url: &str, failure: FailurePolicy) -> redlimit::Builder {
    RateLimiter::builder(crate::support::with_engine(Backend::redis(url).unwrap()))
        .timeout(TIMEOUT)
        .on_failure(failure)
        .circuit_breaker(THRESHOLD, COOL_DOWN)
}

/// One limiter per protocol on `server`.
pub fn limiters(server: &Server, failure: FailurePolicy) -> Vec<(Protocol, RateLimiter)> {
    PROTOCOLS
        .iter()
        .map(|&protocol| (protocol, limiter(&protocol.url(server), failure)))
        .collect()
}

/// A server of `binary` that fails, and comes back where its clients expect it.
pub struct Failing {
    pub binary: ServerBinary,
    pub fault: Fault,
    pub port: u16,
    /// The running (or hung) server; `None` while killed.
    pub server: Option<Server>,
    /// The data directory a killed server leaves for its restart.
    dir: Option<TempDir>,
}

impl Failing {
    pub fn start(binary: &ServerBinary, fault: Fault) -> Self {
        let server = start(binary);
        Self {
            binary: binary.clone(),
            fault,
            port: server.port(),
            server: Some(server),
            dir: None,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("the server is up")
    }

    /// Kills or hangs the server.
    pub fn fail(&mut self) {
        match self.fault {
            Fault::Kill => {
                // A restarted server runs in the first one's directory, which we keep.
                if let Some(dir) = self.server.take().expect("running").kill() {
                    self.dir = Some(dir);
                }
            }
            Fault::Hang => self.server().pause(),
        }
    }

    /// Restarts the killed server on its port and directory, or resumes the hung one.
    pub fn recover(&mut self) {
        match self.fault {
            Fault::Kill => {
                let dir = self.dir.as_ref().expect("killed by fail()").path();
                let server = crate::support::with_module(ServerBuilder::new(&self.binary))
                    .dir(dir)
                    .port(self.port)
                    .start();
                self.server = Some(server);
            }
            Fault::Hang => self.server().resume(),
        }
    }

    pub fn name(&self) -> String {
        format!("{} {:?}", self.binary.name(), self.fault)
    }
}

/// Asserts the answer `failure` gives while the server is unavailable; for the error
/// policy, `circuit_open` says whether the breaker must already be open.
#[track_caller]
pub fn assert_failure_answer(
    result: &Result<Decision>,
    failure: FailurePolicy,
    circuit_open: Option<bool>,
    context: &str,
) {
    match (failure, result) {
        (FailurePolicy::Error, Err(error)) => {
            assert!(error.is_unavailable(), "{context}: {error}");
            if let Some(open) = circuit_open {
                assert_eq!(error.is_circuit_open(), open, "{context}: {error}");
            }
        }
        (FailurePolicy::Open, Ok(decision)) => {
            assert_eq!(
                (decision.allowed, decision.source),
                (true, Source::FailedOpen),
                "{context}"
            );
        }
        (FailurePolicy::Closed, Ok(decision)) => {
            assert_eq!(
                (decision.allowed, decision.source, decision.retry_after),
                (false, Source::FailedClosed, Some(COOL_DOWN)),
                "{context}"
            );
        }
        (FailurePolicy::Fallback, Ok(decision)) => {
            assert_eq!(decision.source, Source::Fallback, "{context}: {decision:?}");
        }
        (failure, result) => panic!("{context}: {failure:?} answered {result:?}"),
    }
}

/// Runs `calls` one after the other, asserting each returns within [`BOUND`]; returns
/// the results and prints the durations under `label`.
pub async fn timed_calls<T, F, Fut>(label: &str, calls: usize, mut call: F) -> Vec<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut results = Vec::new();
    let mut took = Vec::new();
    for _ in 0..calls {
        let (result, elapsed) = timed(call()).await;
        assert!(elapsed < BOUND, "{label}: a call took {elapsed:?}");
        results.push(result);
        took.push(elapsed);
    }
    println!("{label}: {}", figures(&took));
    results
}

/// The server's decision for `key`: with the tight timeout, a loaded machine can make
/// a healthy server miss it, so this tries again (after a cool-down, in case the misses
/// opened the breaker) until the server answers, and fails the test after 10 tries.
pub async fn from_server(limiter: &RateLimiter, key: &str, policy: &Policy) -> Decision {
    for _ in 0..10 {
        match limiter.check(key, policy).await {
            Ok(decision) if decision.source == Source::Server => return decision,
            other => println!("{key}: not from the server on a loaded machine: {other:?}"),
        }
        tokio::time::sleep(COOL_DOWN).await;
    }
    panic!("{key}: the server never answered within {TIMEOUT:?}");
}

/// Sleeps until `instant` (at once if it passed).
pub async fn sleep_until(instant: Instant) {
    tokio::time::sleep_until(instant.into()).await;
}
