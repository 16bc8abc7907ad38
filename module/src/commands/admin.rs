//! Commands around the limiters: `RL.RESET`, `RL.STATUS`, `RL.SETSTATE`.

use crate::args::Args;
use crate::error::CommandError;
use crate::ffi::{Content, Ctx, RawString, bytes};
use crate::{clock, info, reply};
use redlimit_core::Limiter;

/// `RL.RESET key [key ...]`: deletes limiter keys, all or none.
pub fn reset(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::RESET.call();
    let args = Args::new(argv, 1, usize::MAX)?;
    for &name in args.remaining() {
        let mut key = ctx.open_key(name, false)?;
        if matches!(key.content(), Content::Other) {
            return Err(CommandError::WrongType(None));
        }
    }
    // A key past its idle moment is an absent key: deleted, but not counted.
    let now = clock::now(ctx);
    let (mut deleted, mut removed) = (0i64, false);
    for &name in args.remaining() {
        let mut key = ctx.open_key(name, true)?;
        if matches!(key.content(), Content::Limiter(_)) {
            let live = Limiter::live(key.limiter()?.as_ref(), now).is_some();
            key.delete();
            deleted += i64::from(live);
            removed = true;
        }
    }
    if removed {
        ctx.replicate_verbatim();
    }
    ctx.reply_integer(deleted);
    Ok(())
}

/// `RL.STATUS key`: the stored policy and what a request of cost 1 would get now.
pub fn status(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::STATUS.call();
    let mut args = Args::new(argv, 1, 1)?;
    let mut key = ctx.open_key(args.raw()?, false)?;
    let now = clock::now(ctx);
    let stored = key.limiter()?;
    // A key past its idle moment is an absent key, even before the server removes it.
    let Some(limiter) = Limiter::live(stored.as_ref(), now) else {
        ctx.reply_null();
        return Ok(());
    };
    let policy = limiter.policy_fields();
    let decision = limiter.status(now);
    // A policy's `limit` and the decision's `limit` are the same number: say it once.
    let is_new = |name: &&str| !policy.iter().any(|(field, _)| field == name);
    let decision_fields = reply::fields(&decision)
        .map(|(name, _)| name)
        .into_iter()
        .filter(is_new)
        .count();
    ctx.reply_map(1 + policy.len() + decision_fields);
    ctx.reply_bulk(b"algorithm");
    ctx.reply_bulk(limiter.algorithm().name().as_bytes());
    for (name, value) in &policy {
        ctx.reply_bulk(name.as_bytes());
        ctx.reply_integer(reply::saturating_i64(*value));
    }
    reply::decision_pairs(ctx, &decision, is_new);
    Ok(())
}

/// `RL.SETSTATE key state`: stores an encoded limiter as it is, expiring when it idles.
///
/// This is how replication and AOF carry state. The bytes are checked like any input.
pub fn set_state(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::SETSTATE.call();
    let mut args = Args::new(argv, 2, 2)?;
    let name = args.raw()?;
    let state = bytes(args.raw()?);
    let limiter = Limiter::decode(state)
        .map_err(|e| CommandError::Argument(format!("state must be a redlimit state ({e})")))?;
    let mut key = ctx.open_key(name, true)?;
    // A key of another type is WRONGTYPE. The expiry is set as a decision sets it: not
    // again when the one derived from the key's limiter does not move, so the primary,
    // its replicas and AOF replay end with the same expiry whatever happened to it.
    let previous_expire_at_ms = key.limiter()?.as_ref().map(clock::expire_at_ms);
    // Stored re-encoded (canonical, as a command would have written it); replicas get
    // the command as received and re-encode it the same way.
    let expire_at_ms = clock::expire_at_ms(&limiter);
    key.store(&limiter, expire_at_ms, previous_expire_at_ms)
        .map_err(|()| CommandError::Internal)?;
    ctx.replicate_verbatim();
    ctx.reply_simple(c"OK");
    Ok(())
}
