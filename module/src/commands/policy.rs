//! A policy written inline, as `RL.ALL` and `RL.ADJUST` take it: the command name
//! without the `RL.` prefix, then its numeric arguments.

use crate::args::Args;
use crate::error::CommandError;
use redlimit_core::{FixedWindow, Policy, SlidingCounter, SlidingWindow, Throttle, TokenBucket};

/// The algorithms a command takes inline.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// `TOKENBUCKET`, `SLIDING [APPROX]`, `FIXED` (`RL.ALL`).
    Rates,
    /// Those and `THROTTLE max_burst count_per_period period_s` (`RL.ADJUST`).
    RatesAndThrottle,
}

/// Reads one policy named `name` (already read): `TOKENBUCKET capacity refill_tokens
/// refill_ms` | `SLIDING limit window_ms [APPROX]` | `FIXED limit window_ms` | (with
/// [`Accepted::RatesAndThrottle`]) `THROTTLE max_burst count_per_period period_s`.
/// `None` when `name` is none of them.
pub fn read(
    name: &[u8],
    args: &mut Args<'_>,
    accepted: Accepted,
) -> Result<Option<Policy>, CommandError> {
    if name.eq_ignore_ascii_case(b"TOKENBUCKET") {
        let policy = TokenBucket::new(
            args.positive("capacity")?,
            args.positive("refill_tokens")?,
            args.positive("refill_ms")?,
        )?;
        return Ok(Some(Policy::TokenBucket(policy)));
    }
    if name.eq_ignore_ascii_case(b"FIXED") {
        return Ok(Some(Policy::Fixed(FixedWindow::new(
            args.positive("limit")?,
            args.positive("window_ms")?,
        )?)));
    }
    if name.eq_ignore_ascii_case(b"SLIDING") {
        let (limit, window_ms) = (args.positive("limit")?, args.positive("window_ms")?);
        if args
            .peek_bytes()
            .is_some_and(|next| next.eq_ignore_ascii_case(b"APPROX"))
        {
            args.next_bytes();
            return Ok(Some(Policy::SlidingApprox(SlidingCounter::new(
                limit, window_ms,
            )?)));
        }
        return Ok(Some(Policy::Sliding(SlidingWindow::new(limit, window_ms)?)));
    }
    if accepted == Accepted::RatesAndThrottle && name.eq_ignore_ascii_case(b"THROTTLE") {
        let policy = Throttle::new(
            args.integer("max_burst")?,
            args.positive("count_per_period")?,
            args.positive("period_s")?,
        )?;
        return Ok(Some(Policy::Throttle(policy)));
    }
    Ok(None)
}
