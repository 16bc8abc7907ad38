//! The path every limiting command takes: read, decide, store, replicate.

use crate::clock;
use crate::error::CommandError;
use crate::ffi::{Content, Ctx, RawString};
use crate::info::Counters;
use redlimit_core::{Decision, Policy, Request};

/// Decides `request` under `policy` for `key`, applying and replicating the new state.
///
/// Denied requests, peeks and zero costs write nothing and replicate nothing.
pub fn decide(
    ctx: Ctx,
    key_name: RawString,
    policy: Policy,
    request: Request,
    counters: &Counters,
) -> Result<Decision, CommandError> {
    let mut key = ctx.open_key(key_name, !request.is_read_only())?;
    let stored = match key.content() {
        Content::Empty => None,
        Content::Limiter(limiter) => Some(*limiter),
        Content::Other => return Err(CommandError::WrongType(None)),
    };
    let outcome = policy.decide(stored.as_ref(), clock::now(ctx), request)?;
    if let Some(limiter) = outcome.update {
        key.store(limiter, clock::expire_at_ms(&limiter))
            .map_err(|()| CommandError::Internal)?;
        ctx.replicate_state(key_name, &limiter.encode());
    }
    counters.decided(outcome.decision.allowed);
    Ok(outcome.decision)
}
