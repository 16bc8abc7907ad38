//! The window commands:
//! `RL.SLIDING key limit window_ms [COST n] [PEEK] [APPROX]` and
//! `RL.FIXED key limit window_ms [COST n] [PEEK]`.

use super::limit;
use super::options::{self, Flag};
use crate::args::Args;
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{info, reply};
use redlimit_core::{FixedWindow, Policy, SlidingCounter, SlidingWindow};

/// Runs `RL.SLIDING`: the exact log, or the two-window counter with `APPROX`.
pub fn sliding(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::SLIDING.call();
    let mut args = Args::new(argv, 3, 8)?;
    let key = args.raw()?;
    let (limit, window_ms) = (args.positive("limit")?, args.positive("window_ms")?);
    let options = options::parse(&mut args, &[Flag::Cost, Flag::Peek, Flag::Approx])?;
    let policy = if options.approx {
        Policy::SlidingApprox(SlidingCounter::new(limit, window_ms)?)
    } else {
        Policy::Sliding(SlidingWindow::new(limit, window_ms)?)
    };
    let decision = limit::decide(ctx, argv, key, policy, options.request, &info::SLIDING)?;
    reply::decision(ctx, &decision);
    Ok(())
}

/// Runs `RL.FIXED`.
pub fn fixed(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::FIXED.call();
    let mut args = Args::new(argv, 3, 6)?;
    let key = args.raw()?;
    let policy = FixedWindow::new(args.positive("limit")?, args.positive("window_ms")?)?;
    let options = options::parse(&mut args, &[Flag::Cost, Flag::Peek])?;
    let decision = limit::decide(
        ctx,
        argv,
        key,
        Policy::Fixed(policy),
        options.request,
        &info::FIXED,
    )?;
    reply::decision(ctx, &decision);
    Ok(())
}
