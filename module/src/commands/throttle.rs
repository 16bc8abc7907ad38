//! `RL.THROTTLE key max_burst count_per_period period_s [quantity]`: redis-cell's
//! `CL.THROTTLE`, same arguments and reply.
//!
//! A key still holding redis-cell's own state (a Redis string: the TAT in decimal
//! nanoseconds since the epoch, with an expiry near that TAT) is adopted: its TAT is
//! decided on as if this policy had stored it, and an allowed call replaces the string
//! by this module's throttle. So renaming `CL.` to `RL.` on a live server loses nothing.

use super::limit::{self, Propagation};
use crate::args::{Args, integer};
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString};
use crate::{clock, info, policies, reply};
use redlimit_core::{Decision, Limiter, Policy, Request, Throttle, ThrottleState};

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
    // The numbers of the policy last used (interned, so checked) need no check again.
    let same =
        |p: &Throttle| (p.max_burst(), p.count(), p.period_s()) == (max_burst, count, period_s);
    let policy = match policies::last_if(|p| matches!(p, Policy::Throttle(p) if same(p))) {
        Some(Policy::Throttle(policy)) => policy,
        _ => Throttle::new(max_burst, count, period_s)?,
    };
    let request = Request::new(quantity);
    let decided = limit::decide(
        ctx,
        argv,
        key,
        Policy::Throttle(policy),
        request,
        &info::THROTTLE,
    );
    // Only a key of another Redis type gets here: the common path pays nothing.
    let decision = match decided {
        Err(CommandError::WrongType(None)) => adopt(ctx, key, policy, request)?,
        other => other?,
    };
    reply::throttle(ctx, &decision);
    Ok(())
}

/// How far a redis-cell key's expiry may lie from its TAT, in ms. redis-cell expires
/// its key at the server's time plus the TAT's distance from its host's time, truncated
/// to the millisecond: within a few ms of the TAT on one server. The margin covers a
/// key moved between servers whose clocks differ, and a MULTI/EXEC or script during
/// which the server's time stood still; it refuses integer strings that only look like
/// a TAT (a counter with an expiry is decades away from its own value in ns).
const EXPIRY_MARGIN_MS: i64 = 60_000;

/// Decides on a key holding a Redis string, if it is redis-cell's state; else
/// `WRONGTYPE` as before.
///
/// The TAT is taken as stored by this very policy (redis-cell stores no policy, and a
/// migrating caller keeps its numbers), so the replies are redis-cell's. An allowed call
/// replaces the string by this module's throttle and propagates `DEL` then
/// `RL.SETSTATE`: the resulting state, exactly. Replaying the call instead would be
/// wrong: a replica or an AOF holds the string its own re-run of `CL.THROTTLE` computed
/// with its own clock, not the primary's TAT. Denied calls and peeks change nothing and
/// leave the string as it is.
fn adopt(
    ctx: Ctx,
    key_name: RawString,
    policy: Throttle,
    request: Request,
) -> Result<Decision, CommandError> {
    let mut key = ctx.open_key(key_name, !request.is_read_only())?;
    let server_ms = ctx.server_micros().div_euclid(1_000);
    let tat_ns = key
        .string_with_ttl()
        .and_then(|(value, ttl_ms)| redis_cell_tat(value, ttl_ms?.checked_add(server_ms)?))
        .ok_or(CommandError::WrongType(None))?;
    let now = clock::now(ctx);
    let stored = Limiter::Throttle(policy, ThrottleState { tat_ns });
    let outcome = Policy::Throttle(policy).decide(Some(&stored), now, request)?;
    if let Some(limiter) = outcome.update {
        key.delete();
        ctx.replicate_delete(key_name);
        limit::write(ctx, key_name, &mut key, &limiter, Propagation::State)?;
    }
    info::THROTTLE.decided(outcome.decision.allowed);
    Ok(outcome.decision)
}

/// The TAT in a string `value` expiring at `expire_at_ms` (Unix ms), if the two are
/// exactly what redis-cell writes: `u64::to_string` of the TAT in ns (digits only, no
/// sign, no leading zero, no spaces, at most `u64::MAX`) and an expiry near that TAT.
fn redis_cell_tat(value: &[u8], expire_at_ms: i64) -> Option<u64> {
    let tat_ns = canonical_u64(value)?;
    let tat_ms = i64::try_from(tat_ns / 1_000_000).ok()?;
    (tat_ms.abs_diff(expire_at_ms) <= EXPIRY_MARGIN_MS.unsigned_abs()).then_some(tat_ns)
}

/// `digits` as `u64::to_string` writes a number, else `None`.
fn canonical_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with(b"0")) {
        return None;
    }
    digits.iter().try_fold(0u64, |number, &digit| {
        let digit = char::from(digit).to_digit(10)?;
        number.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::{EXPIRY_MARGIN_MS, canonical_u64, redis_cell_tat};

    #[test]
    fn only_canonical_decimal_u64_parses() {
        assert_eq!(canonical_u64(b"0"), Some(0));
        assert_eq!(
            canonical_u64(b"1733300000123456789"),
            Some(1_733_300_000_123_456_789)
        );
        assert_eq!(canonical_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"01",
            b"+1",
            b"-1",
            b" 1",
            b"1 ",
            b"1.0",
            b"1e3",
            b"0x10",
            b"\xff",
        ] {
            assert_eq!(canonical_u64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_expiry_must_lie_near_the_tat() {
        let tat = b"1733300000123456789";
        let tat_ms = 1_733_300_000_123;
        // redis-cell truncates the remaining TTL to whole ms: expiry at or just before.
        assert!(redis_cell_tat(tat, tat_ms).is_some());
        assert!(redis_cell_tat(tat, tat_ms - 1).is_some());
        assert!(redis_cell_tat(tat, tat_ms + EXPIRY_MARGIN_MS).is_some());
        assert!(redis_cell_tat(tat, tat_ms - EXPIRY_MARGIN_MS - 1).is_none());
        // A counter with an expiry: value 17, expiring in 2024.
        assert!(redis_cell_tat(b"17", tat_ms).is_none());
    }
}
