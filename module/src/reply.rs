//! Decision replies: an array of five integers, the same under RESP2 and RESP3 (a RESP3
//! map would let positional client code read the key `"allowed"` as a truthy value).

use crate::ffi::Ctx;
use redlimit_core::{Decision, RetryAfter, ceil_millis, redis_cell_seconds};

/// `retry_after_ms` of the contract: 0 now, -1 never, else milliseconds rounded up.
pub fn retry_after_ms(retry_after: RetryAfter) -> i64 {
    match retry_after {
        RetryAfter::Now => 0,
        RetryAfter::After(wait) => saturating_i64(ceil_millis(wait)),
        RetryAfter::Never => -1,
    }
}

/// The five decision fields, in reply order.
pub fn fields(decision: &Decision) -> [(&'static str, i64); 5] {
    [
        ("allowed", i64::from(decision.allowed)),
        ("limit", saturating_i64(decision.limit)),
        ("remaining", saturating_i64(decision.remaining)),
        ("retry_after_ms", retry_after_ms(decision.retry_after)),
        (
            "reset_after_ms",
            saturating_i64(ceil_millis(decision.reset_after)),
        ),
    ]
}

/// Replies one decision: `[allowed, limit, remaining, retry_after_ms, reset_after_ms]`.
pub fn decision(ctx: Ctx, decision: &Decision) {
    ctx.reply_array(5);
    for (_, value) in fields(decision) {
        ctx.reply_integer(value);
    }
}

/// Writes the decision fields that `include` accepts as `RL.STATUS` map pairs (`allowed`
/// as a boolean under RESP3).
pub fn decision_pairs(ctx: Ctx, decision: &Decision, include: impl Fn(&&str) -> bool) {
    for (name, value) in fields(decision)
        .into_iter()
        .filter(|(name, _)| include(name))
    {
        ctx.reply_bulk(name.as_bytes());
        if name == "allowed" {
            ctx.reply_bool(decision.allowed);
        } else {
            ctx.reply_integer(value);
        }
    }
}

/// redis-cell's reply: `[limited, limit, remaining, retry_after_s, reset_after_s]`.
pub fn throttle(ctx: Ctx, decision: &Decision) {
    let retry_after_s = match (decision.allowed, decision.retry_after) {
        (false, RetryAfter::After(wait)) => saturating_i64(redis_cell_seconds(wait)),
        _ => -1,
    };
    ctx.reply_array(5);
    ctx.reply_integer(i64::from(!decision.allowed));
    ctx.reply_integer(saturating_i64(decision.limit));
    ctx.reply_integer(saturating_i64(decision.remaining));
    ctx.reply_integer(retry_after_s);
    ctx.reply_integer(saturating_i64(redis_cell_seconds(decision.reset_after)));
}

/// Values come from validated policies and stay far below `i64::MAX`; saturate anyway.
pub fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
