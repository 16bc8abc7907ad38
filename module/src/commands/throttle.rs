//! `RL.THROTTLE key max_burst count_per_period period_s [quantity]`: redis-cell's
//! `CL.THROTTLE`, same arguments and reply.

use super::limit;
use crate::args::{Args, integer};
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{info, reply};
use redlimit_core::{Policy, Request, Throttle};

/// Runs `RL.THROTTLE`.
pub fn run(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    info::THROTTLE.call();
    let mut args = Args::new(argv, 4, 5)?;
    let key = args.raw()?;
    let max_burst = args.integer("max_burst")?;
    let count = args.positive("count_per_period")?;
    let period_s = args.positive("period_s")?;
    let quantity = match args.next_bytes() {
        Some(raw) => Request::check_cost("quantity", integer("quantity", raw)?)?,
        None => 1,
    };
    let policy = Throttle::new(max_burst, count, period_s)?;
    let decision = limit::decide(
        ctx,
        argv,
        key,
        Policy::Throttle(policy),
        Request::new(quantity),
        &info::THROTTLE,
    )?;
    reply::throttle(ctx, &decision);
    Ok(())
}
