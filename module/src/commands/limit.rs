//! The path every limiting command takes: read, decide, store, replicate.

use crate::clock;
use crate::error::CommandError;
use crate::ffi::{Ctx, Key, RawString, bytes};
use crate::info::Counters;
use crate::propagation;
use redlimit_core::{Decision, Limiter, Policy, Request};

/// Decides `request` under `policy` for `key`, applying and propagating the new state.
///
/// Denied requests, peeks and zero costs write nothing and propagate nothing.
pub fn decide(
    ctx: Ctx,
    argv: &[RawString],
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
        let previous_expire_at_ms = stored.as_ref().map(clock::expire_at_ms);
        write_after(
            ctx,
            argv,
            key_name,
            &mut key,
            previous_expire_at_ms,
            &limiter,
        )?;
    }
    counters.decided(outcome.decision.allowed);
    Ok(outcome.decision)
}

/// How a write reaches replicas and the AOF. Both ways are exact; the smaller is taken,
/// so a call propagates a few hundred bytes at most whatever its key holds.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Propagation {
    /// `RL.SETSTATE key <state>` for every key written: the resulting state.
    State,
    /// `RL.REPLAY <micros> <the call>`: the call, re-run at its decision time.
    Replay,
}

/// RESP bytes of one bulk argument of `len` bytes (`$<len>\r\n...\r\n`), about.
fn bulk(len: usize) -> usize {
    len + 16
}

/// RESP bytes of `RL.REPLAY <micros> <argv...>`, about.
fn replay_bytes(argv: &[RawString]) -> usize {
    bulk("RL.REPLAY".len())
        + bulk(20)
        + argv
            .iter()
            .map(|&arg| bulk(bytes(arg).len()))
            .sum::<usize>()
}

/// A lower bound of [`replay_bytes`] that reads no argument: most states are smaller.
fn least_replay_bytes(argv: &[RawString]) -> usize {
    bulk("RL.REPLAY".len()) + bulk(20) + argv.len() * bulk(0)
}

/// RESP bytes of `RL.SETSTATE key <state of state_len bytes>`, about.
fn state_bytes(key: RawString, state_len: usize) -> usize {
    bulk("RL.SETSTATE".len()) + bulk(bytes(key).len()) + bulk(state_len)
}

/// The smaller propagation of a call `argv` that writes `written` (key, new limiter).
pub fn propagation<'a>(
    argv: &[RawString],
    written: impl IntoIterator<Item = (RawString, &'a Limiter)>,
) -> Propagation {
    let state: usize = written
        .into_iter()
        .map(|(key, limiter)| state_bytes(key, limiter.encoded_len()))
        .sum();
    if state <= replay_bytes(argv) {
        Propagation::State
    } else {
        Propagation::Replay
    }
}

/// Stores `limiter` in `key` and propagates the call the smaller way, judged on the
/// encoding it stores (no second pass over the state).
pub fn write_and_propagate(
    ctx: Ctx,
    argv: &[RawString],
    key_name: RawString,
    key: &mut Key,
    limiter: &Limiter,
) -> Result<(), CommandError> {
    write_after(ctx, argv, key_name, key, None, limiter)
}

/// [`write_and_propagate`], knowing the expiry the key's limiter was stored with
/// (`None`: unknown, set it), so that an expiry that does not move is not set again.
fn write_after(
    ctx: Ctx,
    argv: &[RawString],
    key_name: RawString,
    key: &mut Key,
    previous_expire_at_ms: Option<i64>,
    limiter: &Limiter,
) -> Result<(), CommandError> {
    let expire_at_ms = clock::expire_at_ms(limiter);
    let stored = key
        .store(limiter, expire_at_ms, previous_expire_at_ms)
        .map_err(|()| CommandError::Internal)?;
    if !propagation::needed() {
        return Ok(());
    }
    let mut buffer = [0u8; STATE_ON_STACK];
    let state = state_of(limiter, stored, &mut buffer)?;
    let state_len = state_bytes(key_name, state.len());
    if state_len <= least_replay_bytes(argv) || state_len <= replay_bytes(argv) {
        ctx.replicate_state(key_name, state);
    } else {
        ctx.replicate_replay(clock::decided_at(), argv);
    }
    Ok(())
}

/// Stores `limiter` in the open `key`, expiring when it idles; with
/// [`Propagation::State`], propagates the state.
pub fn write(
    ctx: Ctx,
    key_name: RawString,
    key: &mut Key,
    limiter: &Limiter,
    how: Propagation,
) -> Result<(), CommandError> {
    let expire_at_ms = clock::expire_at_ms(limiter);
    let stored = key
        .store(limiter, expire_at_ms, None)
        .map_err(|()| CommandError::Internal)?;
    if how == Propagation::State && propagation::needed() {
        let mut buffer = [0u8; STATE_ON_STACK];
        ctx.replicate_state(key_name, state_of(limiter, stored, &mut buffer)?);
    }
    Ok(())
}

/// The longest state encoded on the stack for propagation (any limiter with a compact
/// layout; longer ones are stored encoded, and propagated from the key's value).
const STATE_ON_STACK: usize = 64;

/// The stored encoding of `limiter` for propagation: the key's value when it holds that
/// encoding (`stored`), else encoded into `buffer`.
fn state_of<'a>(
    limiter: &Limiter,
    stored: Option<&'a [u8]>,
    buffer: &'a mut [u8; STATE_ON_STACK],
) -> Result<&'a [u8], CommandError> {
    if let Some(bytes) = stored {
        return Ok(bytes);
    }
    let len = limiter.encode_into(buffer).ok_or(CommandError::Internal)?;
    buffer.get(..len).ok_or(CommandError::Internal)
}
