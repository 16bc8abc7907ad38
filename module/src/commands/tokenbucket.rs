//! `RL.TOKENBUCKET key capacity refill_tokens refill_ms [COST n] [PEEK] [MAXWAIT ms]`

use super::limit;
use super::options::{self, Flag};
use crate::args::Args;
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{info, reply};
use redlimit_core::{Policy, TokenBucket};

/// Runs `RL.TOKENBUCKET`.
pub fn run(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::TOKENBUCKET.call();
    let mut args = Args::new(argv, 4, 9)?;
    let key = args.raw()?;
    let policy = TokenBucket::new(
        args.positive("capacity")?,
        args.positive("refill_tokens")?,
        args.positive("refill_ms")?,
    )?;
    let mut request = options::parse(&mut args, &[Flag::Cost, Flag::Peek, Flag::MaxWait])?.request;
    request.max_wait_ms = policy.check_max_wait(request.max_wait_ms)?;
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
