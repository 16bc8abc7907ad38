//! `RL.TOKENBUCKET key capacity refill_tokens refill_ms [COST n] [PEEK] [MAXWAIT ms]`

use super::limit;
use crate::args::{Args, Once};
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{info, reply};
use redlimit_core::{Policy, Request, TokenBucket};

/// Runs `RL.TOKENBUCKET`.
pub fn run(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::TOKENBUCKET.call();
    let mut args = Args::new(argv, 4, 9)?;
    let key = args.raw()?;
    let capacity = args.positive("capacity")?;
    let refill_tokens = args.positive("refill_tokens")?;
    let refill_ms = args.positive("refill_ms")?;
    let policy = TokenBucket::new(capacity, refill_tokens, refill_ms)?;
    let request = options(&mut args, &policy)?;
    let decision = limit::decide(
        ctx,
        key,
        Policy::TokenBucket(policy),
        request,
        &info::TOKENBUCKET,
    )?;
    reply::decision(ctx, &decision);
    Ok(())
}

/// `[COST n] [PEEK] [MAXWAIT ms]`, in any order, each at most once.
fn options(args: &mut Args<'_>, policy: &TokenBucket) -> Result<Request, CommandError> {
    let mut request = Request::new(1);
    let (mut cost, mut peek, mut max_wait) = (Once::default(), Once::default(), Once::default());
    while let Some(option) = args.next_bytes() {
        if option.eq_ignore_ascii_case(b"COST") {
            cost.see()?;
            request.cost = value(args, "COST")?;
        } else if option.eq_ignore_ascii_case(b"PEEK") {
            peek.see()?;
            request.peek = true;
        } else if option.eq_ignore_ascii_case(b"MAXWAIT") {
            max_wait.see()?;
            request.max_wait_ms = policy.check_max_wait(value(args, "MAXWAIT")?)?;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(request)
}

/// The value of an option; a missing one is a syntax error.
pub fn value(args: &mut Args<'_>, name: &str) -> Result<u64, CommandError> {
    let raw = args.next_bytes().ok_or(CommandError::Syntax)?;
    crate::args::integer(name, raw)
}
