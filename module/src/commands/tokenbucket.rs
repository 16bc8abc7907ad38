//! `RL.TOKENBUCKET key capacity refill_tokens refill_ms [COST n] [PEEK] [MAXWAIT ms]`

use super::limit;
use super::options::{self, Flag};
use crate::args::Args;
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{info, policies, reply};
use redlimit_core::{Policy, TokenBucket};

/// Runs `RL.TOKENBUCKET`.
pub fn run(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::TOKENBUCKET.call();
    let mut args = Args::new(argv, 4, 9)?;
    let key = args.raw()?;
    let capacity = args.positive("capacity")?;
    let refill_tokens = args.positive("refill_tokens")?;
    let refill_ms = args.positive("refill_ms")?;
    // The numbers of the policy last used (interned, so checked) need no check again.
    let same = |p: &TokenBucket| {
        (p.capacity(), p.refill_tokens(), p.refill_ms()) == (capacity, refill_tokens, refill_ms)
    };
    let policy = match policies::last_if(|p| matches!(p, Policy::TokenBucket(p) if same(p))) {
        Some(Policy::TokenBucket(policy)) => policy,
        _ => TokenBucket::new(capacity, refill_tokens, refill_ms)?,
    };
    let mut request = options::parse(&mut args, &[Flag::Cost, Flag::Peek, Flag::MaxWait])?.request;
    // No MAXWAIT (0) is within every policy's bound: the bound is computed only for one.
    if request.max_wait_ms != 0 {
        request.max_wait_ms = policy.check_max_wait(request.max_wait_ms)?;
    }
    let decision = limit::decide(
        ctx,
        argv,
        key,
        Policy::TokenBucket(policy),
        request,
        &info::TOKENBUCKET,
    )?;
    reply::decision(ctx, &decision);
    Ok(())
}
