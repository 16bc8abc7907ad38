//! Limits written next to routes in code: `route_layer(layer.limit("login",
//! "5/minute; 100/hour")?.per_ip())`. They share the app-wide layer's limiter, failure
//! policy, metrics, callers (trusted proxies, JWT) and exemptions, and compose with its
//! configured rules (each layer decides its own rule; the headers list both).

use super::config::{ConfigError, error, from_rates, untagged};
use super::layer::{RateLimitLayer, Shared};
use super::rules::{KeyKind, Rule};
use super::service::RateLimit;
use crate::FailurePolicy;
use std::sync::{Arc, PoisonError};
use tower_layer::Layer;

/// A limit attached to routes in code ([`RateLimitLayer::limit`]): a tower [`Layer`]
/// for `Router::route_layer` (or any service).
#[derive(Clone)]
#[must_use]
pub struct RouteLimit {
    shared: Arc<Shared>,
    rule: Arc<Rule>,
}

impl std::fmt::Debug for RouteLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLimit")
            .field("rule", &self.rule.name)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// A limit for the routes it is attached to, named `name` (in metrics, logs, Redis
    /// keys: distinct from the configured rules' names), of `rates`: rate strings
    /// separated by `;` (`"5/minute; 100/hour"`, `"10/second burst 20"`; the mapping
    /// is that of the configuration file's `limits`). Per client IP unless told
    /// otherwise ([`per_user`](RouteLimit::per_user), ...).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, routing::post};
    /// use redlimit::http::{RateLimitLayer, Settings};
    /// use redlimit::RateLimiter;
    ///
    /// let layer = RateLimitLayer::new(RateLimiter::memory(), Settings::default());
    /// let app: Router = Router::new()
    ///     .route("/login", post(|| async { "welcome" }))
    ///     .route_layer(layer.limit("login", "5/minute; 100/hour")?.per_ip())
    ///     .layer(layer);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A bad name or rate, named (`limit("login").rates[0].rate: ...`); a name a
    /// configured rule already has.
    pub fn limit(&self, name: &str, rates: &str) -> Result<RouteLimit, ConfigError> {
        let field = format!("limit(\"{name}\")");
        untagged(&format!("{field}.name"), name)?;
        let limits = from_rates(&format!("{field}.rates"), rates)?;
        let settings = Arc::clone(
            &self
                .shared()
                .settings
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        );
        if settings.rules.names().any(|rule| rule == name) {
            return Err(error(
                format!("{field}.name"),
                "is a configured rule's name: the two would share counters",
            ));
        }
        Ok(RouteLimit {
            shared: Arc::clone(self.shared()),
            rule: Arc::new(Rule::in_code(name, limits)),
        })
    }
}

impl RouteLimit {
    fn rule(&mut self) -> &mut Rule {
        Arc::make_mut(&mut self.rule)
    }

    fn keyed(mut self, key: KeyKind) -> Self {
        self.rule().key = key;
        self
    }

    /// Per client IP (the default).
    pub fn per_ip(self) -> Self {
        self.keyed(KeyKind::Ip)
    }

    /// Per verified JWT user (the configuration's `[identity.jwt]`), else per IP.
    pub fn per_user(self) -> Self {
        self.keyed(KeyKind::User)
    }

    /// Per API key (the configuration's `api_key_header`), else per IP.
    pub fn per_api_key(self) -> Self {
        self.keyed(KeyKind::ApiKey)
    }

    /// Per the layer's [`Identify`](super::Identify), else per IP.
    pub fn per_custom(self) -> Self {
        self.keyed(KeyKind::Custom)
    }

    /// Adds the limits of `rates`, counting `key`'s requests (the others count the
    /// route limit's key, [`per_ip`](Self::per_ip) by default): per IP and per user in
    /// one route limit,
    /// `layer.limit("api", "300/minute")?.with("1000/hour", KeyKind::User)?`.
    ///
    /// # Errors
    /// A bad rate, or a limit name already in this route limit.
    pub fn with(mut self, rates: &str, key: KeyKind) -> Result<Self, ConfigError> {
        let field = format!("limit(\"{}\").with", self.rule.name);
        let added = from_rates(&format!("{field}.rates"), rates)?;
        let rule = self.rule();
        for mut limit in added {
            if rule.default_limits.iter().any(|l| l.name == limit.name) {
                return Err(error(
                    format!("{field}.rates"),
                    format!("`{}` is this route limit's already", limit.name),
                ));
            }
            limit.key = Some(key);
            rule.default_limits.push(limit);
        }
        Ok(self)
    }

    /// Progressive penalties ([the file's `penalty`](super)): after `after` refusals
    /// within an hour, block the caller for `block`, doubled with every further
    /// refusal, at most `max_block` (at least `block`; between 1 ms and a year).
    pub fn penalty(
        mut self,
        after: u64,
        block: std::time::Duration,
        max_block: std::time::Duration,
    ) -> Self {
        let ms = |d: std::time::Duration| {
            u64::try_from(d.as_millis())
                .unwrap_or(u64::MAX)
                .clamp(1, 365 * 86_400_000)
        };
        let block_ms = ms(block);
        self.rule().penalty = Some(super::penalty::Penalty {
            after: after.max(1),
            window_ms: 3_600_000,
            block_ms,
            max_block_ms: ms(max_block).max(block_ms),
        });
        self
    }

    /// Units each request takes (default 1; the layer's cost function, if any, is
    /// asked first, with this limit's name).
    pub fn cost(mut self, cost: u64) -> Self {
        self.rule().cost = cost.min(redlimit_core::MAX_COUNT);
        self
    }

    /// This limit's failure policy (default: the limiter's).
    pub fn failure(mut self, policy: FailurePolicy) -> Self {
        self.rule().failure = Some(policy);
        self
    }

    /// Count only the requests whose response `counts` by its status (Flask-Limiter's
    /// `deduct_when`): e.g. failed logins only, `|status| status.is_client_error()`.
    /// Before the handler, the limits are peeked: a caller over the limit is refused
    /// (429) and nothing is counted; after it, a response that counts is counted
    /// (without delaying the response), one that does not is not, and the headers say
    /// which.
    pub fn count_when(
        mut self,
        counts: impl Fn(http::StatusCode) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.rule().count_when = Some(super::deferred::CountWhen(Arc::new(counts)));
        self
    }

    /// Decide and report, never refuse ([shadow mode](super)).
    pub fn shadow(mut self) -> Self {
        self.rule().shadow = true;
        self
    }
}

impl<S> Layer<S> for RouteLimit {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // Known to the usage route from now on (once per name).
        let mut routes = self
            .shared
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !routes.iter().any(|rule| rule.name == self.rule.name) {
            routes.push(Arc::clone(&self.rule));
        }
        drop(routes);
        RateLimit::new(
            inner,
            Arc::clone(&self.shared),
            Some(Arc::clone(&self.rule)),
        )
    }
}
