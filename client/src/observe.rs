//! `tracing` spans and events and `metrics` series, each behind its feature; without
//! them these functions compile to nothing.
//!
//! Spans: one `debug` span named `redlimit` per public operation, with `operation`, and
//! for decisions `outcome` (`allowed`/`denied`/`error`), `source` and `elapsed_us`,
//! recorded once. When DEBUG is off for it, no span is made and no clock is read.
//!
//! Metrics: `redlimit_decisions_total{operation, outcome, source}`,
//! `redlimit_decision_seconds{operation, source}` (histogram),
//! `redlimit_backend_errors_total{kind}`, `redlimit_breaker_transitions_total{to}`.

use crate::breaker::Change;
use crate::decision::{AllDecision, Decision, Source};
use crate::error::{Error, Result};
use std::time::Duration;

/// A decision was made: counted in the metrics (the operation's span, if any, records
/// it: [`record`]).
#[allow(unused_variables)]
pub fn decision(operation: &'static str, allowed: bool, source: Source, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    series::decision(operation, allowed, source, elapsed);
}

/// The `redlimit` span of one operation and when it began; nothing at all (no span, no
/// clock) when `tracing` is off at the DEBUG level for it.
pub(crate) struct Span {
    #[cfg(feature = "tracing")]
    span: tracing::Span,
    #[cfg(feature = "tracing")]
    started: Option<std::time::Instant>,
}

/// Opens the span of `operation` (a `debug` span named `redlimit`, with the field
/// `operation`, and once decided `outcome`, `source` and `elapsed_us`).
#[allow(unused_variables)]
pub(crate) fn span(operation: &'static str) -> Span {
    #[cfg(feature = "tracing")]
    {
        use tracing::field::Empty;
        let span = tracing::debug_span!(
            "redlimit",
            operation,
            outcome = Empty,
            source = Empty,
            elapsed_us = Empty
        );
        if span.is_disabled() {
            // Not even the disabled span's metadata: entering `none` does nothing.
            return Span {
                span: tracing::Span::none(),
                started: None,
            };
        }
        Span {
            span,
            started: Some(std::time::Instant::now()),
        }
    }
    #[cfg(not(feature = "tracing"))]
    Span {}
}

/// `future` inside `span`: events of the call (backend errors, the breaker) belong to
/// it. A span that is off costs a branch per poll (entering and leaving no span, and
/// cloning and dropping it, would change nothing).
#[cfg(feature = "tracing")]
pub(crate) fn within<F: std::future::Future>(
    span: &Span,
    future: F,
) -> futures_util::future::Either<tracing::instrument::Instrumented<F>, F> {
    use futures_util::future::Either;
    if span.span.is_none() {
        Either::Right(future)
    } else {
        Either::Left(tracing::Instrument::instrument(future, span.span.clone()))
    }
}

/// `future` as it is (no `tracing` feature).
#[cfg(not(feature = "tracing"))]
pub(crate) fn within<F: std::future::Future>(_: &Span, future: F) -> F {
    future
}

/// Records the decision (or the error) of a single-limit operation on its span, once.
#[allow(unused_variables)]
pub(crate) fn record(span: &Span, decided: &Result<Decision>) {
    #[cfg(feature = "tracing")]
    record_outcome(
        span,
        decided
            .as_ref()
            .map(|decision| (decision.allowed, decision.source)),
    );
}

/// [`record`] for an all-or-nothing operation: its overall answer.
#[allow(unused_variables)]
pub(crate) fn record_all(span: &Span, decided: &Result<AllDecision>) {
    #[cfg(feature = "tracing")]
    record_outcome(span, decided.as_ref().map(|all| (all.allowed, all.source)));
}

#[cfg(feature = "tracing")]
fn record_outcome(span: &Span, outcome: std::result::Result<(bool, Source), &crate::Error>) {
    let Some(started) = span.started else {
        return;
    };
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let span = &span.span;
    match outcome {
        Ok((allowed, source)) => {
            let (outcome, source) = (if allowed { "allowed" } else { "denied" }, source.as_str());
            tracing::record_all!(span, outcome, source, elapsed_us);
        }
        Err(_) => tracing::record_all!(span, outcome = "error", elapsed_us),
    }
}

/// The server could not decide; logged (a warning) when `log` says so, counted always.
#[allow(unused_variables)]
pub fn backend_error(operation: &'static str, error: &Error, log: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!("redlimit_backend_errors_total", "kind" => error.kind().as_str())
        .increment(1);
    #[cfg(feature = "tracing")]
    if log {
        tracing::warn!(operation, kind = error.kind().as_str(), %error, "redlimit backend error");
    }
}

/// Lasting trouble (the module missing, or unreadable replies) is over: a call
/// succeeded again.
#[allow(unused_variables)]
pub fn trouble_ended(module_was_missing: bool) {
    #[cfg(feature = "tracing")]
    if module_was_missing {
        tracing::info!("redlimit: the redlimit module answers again: the server decides");
    } else {
        tracing::info!("redlimit: the server's replies are readable again: the server decides");
    }
}

/// The circuit breaker opened or closed.
#[allow(unused_variables)]
pub fn breaker(change: Change, cool_down: Duration) {
    let to = match change {
        Change::Opened => "open",
        Change::Closed => "closed",
    };
    #[cfg(feature = "metrics")]
    metrics::counter!("redlimit_breaker_transitions_total", "to" => to).increment(1);
    #[cfg(feature = "tracing")]
    match change {
        Change::Opened => tracing::warn!(
            cool_down_ms = u64::try_from(cool_down.as_millis()).unwrap_or(u64::MAX),
            "redlimit circuit breaker opened: the server is left alone for a cool-down"
        ),
        Change::Closed => tracing::info!("redlimit circuit breaker closed: the server is back"),
    }
}

/// `ServerEngine::Auto` chose an engine for `node`.
#[allow(unused_variables)]
pub fn engine_chosen(module: bool, node: &str) {
    #[cfg(feature = "tracing")]
    if module {
        tracing::info!(
            node,
            "redlimit: the redlimit module is loaded: RL.* commands decide"
        );
    } else {
        tracing::info!(
            node,
            "redlimit: no redlimit module: Lua scripts decide (load the module for speed)"
        );
    }
}

/// The decision series, their keys built once: a decision records through the facade
/// without building labels (no allocation), whatever the recorder.
#[cfg(feature = "metrics")]
mod series {
    use crate::decision::Source;
    use metrics::{Key, Label, Level, Metadata};
    use std::sync::OnceLock;
    use std::time::Duration;

    /// The operations whose decisions are counted; another one builds its key per call.
    const OPERATIONS: [&str; 7] = [
        "check",
        "peek",
        "wait",
        "check_all",
        "peek_all",
        "acquire",
        "admit",
    ];
    const SOURCES: [Source; 6] = [
        Source::Server,
        Source::Memory,
        Source::Fallback,
        Source::FailedOpen,
        Source::FailedClosed,
        Source::LocalCache,
    ];
    const OUTCOMES: [&str; 2] = ["allowed", "denied"];
    const DECISIONS: &str = "redlimit_decisions_total";
    const SECONDS: &str = "redlimit_decision_seconds";

    /// What `metrics::counter!` gives its series.
    static METADATA: Metadata<'static> =
        Metadata::new("redlimit::observe", Level::INFO, Some("redlimit::observe"));

    struct Keys {
        /// By operation, outcome, source.
        decisions: Vec<Key>,
        /// By operation, source.
        seconds: Vec<Key>,
    }

    static KEYS: OnceLock<Keys> = OnceLock::new();

    fn decisions_key(operation: &'static str, outcome: &'static str, source: Source) -> Key {
        Key::from_parts(
            DECISIONS,
            vec![
                Label::new("operation", operation),
                Label::new("outcome", outcome),
                Label::new("source", source.as_str()),
            ],
        )
    }

    fn seconds_key(operation: &'static str, source: Source) -> Key {
        Key::from_parts(
            SECONDS,
            vec![
                Label::new("operation", operation),
                Label::new("source", source.as_str()),
            ],
        )
    }

    impl Keys {
        fn new() -> Self {
            let mut decisions = Vec::new();
            let mut seconds = Vec::new();
            for operation in OPERATIONS {
                for outcome in OUTCOMES {
                    for source in SOURCES {
                        decisions.push(decisions_key(operation, outcome, source));
                    }
                }
                for source in SOURCES {
                    seconds.push(seconds_key(operation, source));
                }
            }
            Self { decisions, seconds }
        }
    }

    fn source_index(source: Source) -> usize {
        match source {
            Source::Server => 0,
            Source::Memory => 1,
            Source::Fallback => 2,
            Source::FailedOpen => 3,
            Source::FailedClosed => 4,
            Source::LocalCache => 5,
        }
    }

    pub(super) fn decision(
        operation: &'static str,
        allowed: bool,
        source: Source,
        elapsed: Duration,
    ) {
        let outcome = usize::from(!allowed);
        let (s, seconds) = (source_index(source), elapsed.as_secs_f64());
        let cached = OPERATIONS.iter().position(|known| *known == operation);
        let keys = cached.map(|_| KEYS.get_or_init(Keys::new));
        let at = |o: usize| (o * OUTCOMES.len() + outcome) * SOURCES.len() + s;
        let pair = cached.zip(keys).and_then(|(o, keys)| {
            Some((
                keys.decisions.get(at(o))?,
                keys.seconds.get(o * SOURCES.len() + s)?,
            ))
        });
        metrics::with_recorder(|recorder| match pair {
            Some((counted, timed)) => {
                recorder.register_counter(counted, &METADATA).increment(1);
                recorder
                    .register_histogram(timed, &METADATA)
                    .record(seconds);
            }
            None => {
                let outcome = OUTCOMES[outcome];
                let counted = decisions_key(operation, outcome, source);
                recorder.register_counter(&counted, &METADATA).increment(1);
                let timed = seconds_key(operation, source);
                recorder
                    .register_histogram(&timed, &METADATA)
                    .record(seconds);
            }
        });
    }
}
