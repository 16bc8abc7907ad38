//! One decision: the round trip to Redis (`RL.ALL` for several limits), the failure
//! policy, metrics and logs, and the verdict: serve with headers, or answer 429.

use super::caller::LimitDecision;
use super::check::{Request, uncount};
use super::config::Settings;
use super::deferred::Deferred;
use super::headers::{HeaderStyle, RateHeaders};
use super::layer::Shared;
use super::metrics::Outcome;
use super::rejection::{self, Limited};
use super::rules::{NamedLimit, Rule};
use crate::{Decision, RateLimiter, Source};
use axum::body::Body;
use http::Response;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the decision says to do with the request.
pub(crate) enum Verdict {
    /// Serve it, adding these headers to the response and these decisions to the
    /// request's [`Caller`](super::Caller).
    Serve(
        Option<RateHeaders>,
        Vec<LimitDecision>,
        Option<Box<Deferred>>,
    ),
    /// Answer this instead.
    Answer(Response<Body>),
}

/// The rule of a decision: one of the settings' (by index: a reload replaces them
/// whole), or a limit attached to a route in code.
pub(crate) enum RuleRef {
    Index(usize),
    Own(Arc<Rule>),
}

/// Everything a decision needs, owned so that its future is `'static`.
pub(crate) struct Decide {
    pub(crate) rule: RuleRef,
    pub(crate) tier: Option<usize>,
    pub(crate) keys: Vec<String>,
    pub(crate) cost: u64,
    /// Whether the keys name several callers (several hash tags).
    pub(crate) spread: bool,
    /// The start of the caller's penalty keys, for rules with penalties.
    pub(crate) penalty: Option<String>,
}

impl Decide {
    pub(crate) async fn run(self, shared: Arc<Shared>, settings: Arc<Settings>) -> Verdict {
        let rule = match &self.rule {
            RuleRef::Index(index) => settings.rules.get(*index),
            RuleRef::Own(rule) => Some(&**rule),
        };
        let Some(rule) = rule else {
            return Verdict::Serve(None, Vec::new(), None);
        };
        let limits = rule.limits_at(self.tier);
        let with_policy;
        let limiter = match rule.failure {
            Some(policy) => {
                with_policy = shared.limiter.with_failure_policy(policy);
                &with_policy
            }
            None => &shared.limiter,
        };
        let started = Instant::now();
        let penalty = rule.penalty.zip(self.penalty.as_deref());
        let shadow = settings.shadow || rule.shadow;
        if let Some((penalty, base)) = penalty.filter(|_| !shadow) {
            if let Some(wait) = penalty.blocked(limiter, base).await {
                shared
                    .metrics
                    .decision(&rule.name, Outcome::Denied, false, started.elapsed());
                return Verdict::Answer(blocked(&shared, rule, wait));
            }
        }
        let request = Request {
            keys: &self.keys,
            limits,
            cost: self.cost,
            spread: self.spread,
            peek: rule.count_when.is_some(),
        };
        let decisions = match request.decide_afresh(limiter, &shared.cluster).await {
            Ok(decisions) => decisions,
            Err(error) => {
                // Never turn our trouble into the caller's error: serve, and say so
                // (once while the same error lasts: the metrics count every request).
                shared.metrics.backend_error(&rule.name);
                shared.failed(&rule.name, &error);
                return Verdict::Serve(None, Vec::new(), None);
            }
        };
        shared.decided();
        let latency = started.elapsed();
        let allowed = decisions.iter().all(|d| d.allowed);
        let backend_error = decisions.iter().any(|d| {
            matches!(
                d.source,
                Source::Fallback | Source::FailedOpen | Source::FailedClosed
            )
        });
        let outcome = match (allowed, shadow) {
            (true, _) => Outcome::Allowed,
            (false, false) => Outcome::Denied,
            (false, true) => Outcome::ShadowDenied,
        };
        shared
            .metrics
            .decision(&rule.name, outcome, backend_error, latency);
        if shadow {
            if !allowed {
                tracing::info!(rule = %rule.name, shadow = true, "redlimit: over the limit (shadow mode: served)");
            }
            let deferred = self.deferred(rule, &shared, limiter, limits, &decisions, None);
            return Verdict::Serve(None, taken(rule, limits, &decisions), deferred);
        }
        // Fail-open and fail-closed answers know no real numbers: no rate-limit headers
        // (a fail-closed 429 still says when to retry).
        let guessed = decisions
            .iter()
            .any(|d| matches!(d.source, Source::FailedOpen | Source::FailedClosed));
        let style = (settings.headers != HeaderStyle::None && !guessed).then_some(settings.headers);
        let headers = style.map(|style| RateHeaders::write(style, limits, &decisions));
        if allowed {
            let taken = taken(rule, limits, &decisions);
            let deferred = self.deferred(rule, &shared, limiter, limits, &decisions, style);
            return Verdict::Serve(headers, taken, deferred);
        }
        let mut limited = limited(rule, limits, &decisions);
        if let Some((penalty, base)) = penalty.filter(|_| !limited.unavailable) {
            if let Some(block) = penalty.strike(limiter, base).await {
                limited.retry_after = limited.retry_after.map(|wait| wait.max(block));
            }
        }
        let retry_after_ms = limited
            .retry_after
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if limited.unavailable {
            tracing::debug!(rule = %rule.name, retry_after_ms, "redlimit: request refused: the limits cannot be checked (fail closed)");
        } else {
            tracing::info!(
                rule = %rule.name,
                violated = ?limited.violated_policies,
                retry_after_ms,
                "redlimit: request refused (429)"
            );
        }
        let mut response = (shared.rejection)(&limited);
        if let Some(headers) = headers {
            headers.insert_into(response.headers_mut());
        }
        rejection::retry_after(&mut response, &limited);
        Verdict::Answer(response)
    }
}

impl Decide {
    /// For a `count_when` rule whose limits allowed (peeked): the headers of a
    /// response that does not count, and the counting of one that does.
    fn deferred(
        &self,
        rule: &Rule,
        shared: &Arc<Shared>,
        limiter: &RateLimiter,
        limits: &[NamedLimit],
        decisions: &[Decision],
        style: Option<HeaderStyle>,
    ) -> Option<Box<Deferred>> {
        let when = rule.count_when.clone()?;
        let uncounted = style.map(|style| {
            let mut uncounted = decisions.to_vec();
            for (decision, limit) in uncounted.iter_mut().zip(limits) {
                uncount(decision, &limit.policy, self.cost);
            }
            RateHeaders::write(style, limits, &uncounted)
        });
        let (shared, limiter, limits) = (Arc::clone(shared), limiter.clone(), limits.to_vec());
        let name = rule.name.clone();
        let (keys, cost, spread) = (self.keys.clone(), self.cost, self.spread);
        let count = move || {
            tokio::spawn(async move {
                let request = Request {
                    keys: &keys,
                    limits: &limits,
                    cost,
                    spread,
                    peek: false,
                };
                // Served already: a refusal here (a race since the peek) changes nothing.
                if let Err(error) = request.decide_afresh(&limiter, &shared.cluster).await {
                    shared.metrics.backend_error(&name);
                    shared.failed(&name, &error);
                }
            });
        };
        Some(Box::new(Deferred {
            when,
            uncounted,
            count: Box::new(count),
        }))
    }
}

/// The answer to a caller blocked by a penalty: the rejection with the violated
/// policy `penalty` and `Retry-After` at the block's end (no rate-limit headers: the
/// limits were not asked).
fn blocked(shared: &Shared, rule: &Rule, wait: Duration) -> Response<Body> {
    let limited = Limited {
        rule: rule.name.clone(),
        violated_policies: vec!["penalty".to_owned()],
        retry_after: Some(wait),
        unavailable: false,
    };
    tracing::info!(rule = %rule.name, retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "redlimit: request refused (429): the caller is blocked by a penalty");
    let mut response = (shared.rejection)(&limited);
    rejection::retry_after(&mut response, &limited);
    response
}

/// The decisions of `rule`'s `limits`, for the handler.
fn taken(rule: &Rule, limits: &[NamedLimit], decisions: &[Decision]) -> Vec<LimitDecision> {
    limits
        .iter()
        .zip(decisions)
        .map(|(limit, decision)| LimitDecision {
            rule: rule.name.clone(),
            limit: limit.name.clone(),
            decision: *decision,
        })
        .collect()
}

fn limited(rule: &Rule, limits: &[NamedLimit], decisions: &[Decision]) -> Limited {
    let denied: Vec<(&NamedLimit, &Decision)> = limits
        .iter()
        .zip(decisions)
        .filter(|(_, d)| !d.allowed)
        .collect();
    let retry_after = denied.iter().try_fold(Duration::ZERO, |longest, (_, d)| {
        d.retry_after.map(|w| longest.max(w))
    });
    // A fail-closed refusal violated nothing: the limits could not be checked.
    Limited {
        rule: rule.name.clone(),
        violated_policies: denied
            .iter()
            .filter(|(_, d)| d.source != Source::FailedClosed)
            .map(|(l, _)| l.name.clone())
            .collect(),
        retry_after,
        unavailable: denied.iter().any(|(_, d)| d.source == Source::FailedClosed),
    }
}
