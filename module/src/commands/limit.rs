//! The path every limiting command takes: read, decide, store, replicate.

use crate::clock;
use crate::error::CommandError;
use crate::ffi::{Ctx, Key, RawString};
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
    let stored = key.limiter()?;
    let outcome = policy.decide(stored.as_ref(), now, request)?;
    if let Some(limiter) = outcome.update {
        write(ctx, key_name, &mut key, &limiter)?;
    }
    counters.decided(outcome.decision.allowed);
    Ok(outcome.decision)
}

/// The largest encoding written without a heap allocation (every limiter but sliding
/// logs of more than about 150 entries and large lease sets).
const STACK_ENCODING: usize = 512;

/// Stores `limiter` in the open `key`, expiring when it idles, and replicates the state.
pub fn write(
    ctx: Ctx,
    key_name: RawString,
    key: &mut Key,
    limiter: &Limiter,
) -> Result<(), CommandError> {
    let expire_at_ms = clock::expire_at_ms(limiter);
    with_encoding(limiter, |state| {
        key.store(state, expire_at_ms)
            .map_err(|()| CommandError::Internal)?;
        ctx.replicate_state(key_name, state);
        Ok(())
    })
}

/// Runs `f` on the stored encoding of `limiter`, written on the stack when it fits.
pub fn with_encoding<R>(limiter: &Limiter, f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buffer = [0u8; STACK_ENCODING];
    match limiter.encode_into(&mut buffer) {
        Some(len) => f(buffer.get(..len).unwrap_or_default()),
        None => f(&limiter.encode()),
    }
}
