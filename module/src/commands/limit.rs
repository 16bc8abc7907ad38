//! The path every limiting command takes: read, decide, store, replicate.

use crate::clock;
use crate::error::CommandError;
use crate::ffi::{Content, Ctx, Key, RawString};
use crate::info::Counters;
use redlimit_core::{Decision, Limiter, Policy, Request};

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
    let now = clock::now(ctx);
    let outcome = match key.content() {
        Content::Empty => policy.decide(None, now, request)?,
        Content::Limiter(stored) => policy.decide(Some(stored), now, request)?,
        Content::Other => return Err(CommandError::WrongType(None)),
    };
    if let Some(limiter) = outcome.update {
        write(ctx, key_name, &mut key, limiter)?;
    }
    counters.decided(outcome.decision.allowed);
    Ok(outcome.decision)
}

/// Stores `limiter` in the open `key`, expiring when it idles, and replicates the state.
pub fn write(
    ctx: Ctx,
    key_name: RawString,
    key: &mut Key,
    limiter: Limiter,
) -> Result<(), CommandError> {
    let (expire_at_ms, state) = (clock::expire_at_ms(&limiter), limiter.encode());
    key.store(limiter, expire_at_ms)
        .map_err(|()| CommandError::Internal)?;
    ctx.replicate_state(key_name, &state);
    Ok(())
}
