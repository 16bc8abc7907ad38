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
    let now = clock::now(ctx);
    let outcome = match key.content() {
        Content::Empty => policy.decide(None, now, request)?,
        Content::Limiter(stored) => policy.decide(Some(stored), now, request)?,
        Content::Other => return Err(CommandError::WrongType(None)),
    };
    if let Some(limiter) = outcome.update {
        let (expire_at_ms, state) = (clock::expire_at_ms(&limiter), limiter.encode());
        key.store(limiter, expire_at_ms)
            .map_err(|()| CommandError::Internal)?;
        ctx.replicate_state(key_name, &state);
    }
    counters.decided(outcome.decision.allowed);
    Ok(outcome.decision)
}
