//! Checks the limits of a rule: their policies, from numbers or a rate, and names.

use super::compile::untagged;
use super::rate::{self, Rate};
use super::schema::{LimitAlgorithm, LimitConfig};
use super::{ConfigError, error};
use crate::Policy;
use crate::http::rules::NamedLimit;

/// A limit name keys one Redis limiter per caller, whatever the tier: within a rule, it
/// must keep one algorithm (else callers of two tiers under one key, such as the IP of
/// an anonymous and a signed-in caller, would find a limiter of the other algorithm).
pub(super) fn same_algorithm_per_name(
    field: &str,
    default_limits: &[NamedLimit],
    tiers: &[(String, Vec<NamedLimit>)],
) -> Result<(), ConfigError> {
    let mut seen: Vec<&NamedLimit> = default_limits.iter().collect();
    for (tier, limits) in tiers {
        for (i, limit) in limits.iter().enumerate() {
            match seen.iter().find(|l| l.name == limit.name) {
                Some(other)
                    if std::mem::discriminant(&other.policy)
                        != std::mem::discriminant(&limit.policy) =>
                {
                    return Err(error(
                        format!("{field}.tiers.{tier}.limits[{i}].algorithm"),
                        format!(
                            "`{}` has another algorithm elsewhere in this rule: give it another name",
                            limit.name
                        ),
                    ));
                }
                Some(_) => {}
                None => seen.push(limit),
            }
        }
    }
    Ok(())
}

pub(super) fn compile_limits(
    field: &str,
    limits: &[LimitConfig],
) -> Result<Vec<NamedLimit>, ConfigError> {
    let mut compiled: Vec<NamedLimit> = Vec::with_capacity(limits.len());
    for (i, limit) in limits.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let (policy, default_name) = compile_policy(&field, limit)?;
        if limits.len() > 1 && matches!(policy, Policy::Throttle(_)) {
            return Err(error(
                format!("{field}.algorithm"),
                "throttle cannot be combined with other limits (RL.ALL takes token_bucket, \
                 sliding, sliding_approx and fixed)",
            ));
        }
        let name = limit.name.clone().unwrap_or(default_name);
        untagged(&format!("{field}.name"), &name)?;
        if name.starts_with('!') {
            return Err(error(
                format!("{field}.name"),
                "must not start with `!` (the penalty's keys do)",
            ));
        }
        if compiled.iter().any(|l| l.name == name) {
            return Err(error(
                format!("{field}.name"),
                format!("`{name}` is used twice"),
            ));
        }
        compiled.push(NamedLimit::new(name, policy, limit.key));
    }
    Ok(compiled)
}

/// The policy of one limit, and its default name.
fn compile_policy(field: &str, limit: &LimitConfig) -> Result<(Policy, String), ConfigError> {
    let given = [
        ("capacity", limit.capacity),
        ("refill_tokens", limit.refill_tokens),
        ("refill_ms", limit.refill_ms),
        ("limit", limit.limit),
        ("window_ms", limit.window_ms),
        ("max_burst", limit.max_burst),
        ("count_per_period", limit.count_per_period),
        ("period_s", limit.period_s),
    ];
    let algorithm = limit.algorithm.map(LimitAlgorithm::as_str);
    if let Some(text) = &limit.rate {
        if let Some((name, _)) = given.iter().find(|(_, value)| value.is_some()) {
            return Err(error(
                format!("{field}.{name}"),
                "does not go with `rate`: give the rate or the numbers",
            ));
        }
        let rates: Vec<&str> = rate::split(text).collect();
        let [one] = rates.as_slice() else {
            return Err(error(
                format!("{field}.rate"),
                "holds one rate: write several as `limits = \"5/minute; 100/hour\"`",
            ));
        };
        let rate = Rate::parse(one).map_err(|m| error(format!("{field}.rate"), m))?;
        let policy = rate
            .policy(algorithm)
            .map_err(|(argument, m)| error(format!("{field}.{argument}"), m))?;
        return Ok((policy, rate.name()));
    }
    let Some(algorithm) = algorithm else {
        return Err(error(
            format!("{field}.algorithm"),
            "is required unless the limit has a `rate`",
        ));
    };
    let need = |name: &str, value: Option<u64>| {
        value.ok_or_else(|| {
            error(
                format!("{field}.{name}"),
                format!("is required by {algorithm} (or give a `rate`)"),
            )
        })
    };
    let named = |e: crate::ArgumentError| {
        let argument = match e.argument() {
            "period" => "period_s",
            "count_per_period" => "count_per_period",
            other => other,
        };
        error(format!("{field}.{argument}"), e)
    };
    let extra = |allowed: &[&str]| -> Result<(), ConfigError> {
        match given
            .iter()
            .find(|(name, value)| value.is_some() && !allowed.contains(name))
        {
            Some((name, _)) => Err(error(
                format!("{field}.{name}"),
                format!("does not apply to {algorithm}"),
            )),
            None => Ok(()),
        }
    };
    let policy = match algorithm {
        "token_bucket" => {
            extra(&["capacity", "refill_tokens", "refill_ms"])?;
            Policy::token_bucket(
                need("capacity", limit.capacity)?,
                need("refill_tokens", limit.refill_tokens)?,
                need("refill_ms", limit.refill_ms)?,
            )
        }
        "throttle" => {
            extra(&["max_burst", "count_per_period", "period_s"])?;
            Policy::throttle(
                need("max_burst", limit.max_burst)?,
                need("count_per_period", limit.count_per_period)?,
                need("period_s", limit.period_s)?,
            )
        }
        _ => {
            extra(&["limit", "window_ms"])?;
            let (limit_n, window) = (
                need("limit", limit.limit)?,
                need("window_ms", limit.window_ms)?,
            );
            match algorithm {
                "sliding" => Policy::sliding(limit_n, window),
                "sliding_approx" => Policy::sliding_approx(limit_n, window),
                _ => Policy::fixed(limit_n, window),
            }
        }
    }
    .map_err(named)?;
    Ok((policy, algorithm.to_owned()))
}

/// The limits of a rate string (`"5/minute; 100/hour"`), for limits written in code.
pub(crate) fn from_rates(field: &str, rates: &str) -> Result<Vec<NamedLimit>, ConfigError> {
    let limits: Vec<LimitConfig> = rate::split(rates).map(LimitConfig::rate).collect();
    if limits.is_empty() {
        return Err(error(field, format!("`{rates}` holds no rate")));
    }
    compile_limits(field, &limits)
}
