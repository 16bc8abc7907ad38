//! The compact in-memory layout of a value: 16 bytes, fixed-width fields, the policy as
//! an interned id ([`crate::policies`]).
//!
//! ```text
//! byte 0       0 (a stored-encoding value starts with its length, never 0)
//! bytes 1..3   the policy's id, little-endian
//! bytes 3..16  the state, little-endian, widths fixed by the policy's algorithm:
//!   token bucket    deficit 6 bytes, at (µs) 7 bytes
//!   throttle        tat (ns) 8 bytes
//!   fixed window    end (ms) 6 bytes, count 7 bytes
//!   APPROX          start (ms) 6 bytes, previous 3 bytes, current 4 bytes
//! ```
//!
//! Only the token bucket, throttle, fixed window and APPROX counter have one, and only
//! when the policy could be interned and every number fits its width (any state a
//! command leaves in this century with ordinary policies); any other limiter keeps the
//! stored encoding. Decoding needs no check: the bytes are only ever written here, from
//! a limiter that was checked (decided by a command, or decoded from a checked
//! encoding), and read back as exactly that limiter. This layout never leaves the
//! process: RDB, DUMP, AOF, replication and digests see the stored encoding (version 1),
//! made from the decoded limiter ([`crate::datatype`]).

use crate::policies;
use redlimit_core::{
    BucketState, Limiter, Policy, ThrottleState, Timestamp, WindowCount, WindowPair,
};

/// The length of a compact value.
pub const LEN: usize = 16;
/// The first byte of a compact value.
pub const MARK: u8 = 0;

/// Where the state starts.
const STATE: usize = 3;

/// The policy of a limiter that has a compact layout.
pub fn policy_of(limiter: &Limiter) -> Option<Policy> {
    match limiter {
        Limiter::TokenBucket(p, _) => Some(Policy::TokenBucket(*p)),
        Limiter::Throttle(p, _) => Some(Policy::Throttle(*p)),
        Limiter::Fixed(p, _) => Some(Policy::Fixed(*p)),
        Limiter::SlidingApprox(p, _) => Some(Policy::SlidingApprox(*p)),
        _ => None,
    }
}

/// The policy id of a compact value.
pub fn id(bytes: &[u8; LEN]) -> u16 {
    let [_, low, high, ..] = *bytes;
    u16::from_le_bytes([low, high])
}

/// The compact layout of `limiter`, its policy interned (or found as `hint`, the id of
/// the value it replaces, when that names the same policy); `None` when it has none.
pub fn encode(limiter: &Limiter, hint: Option<u16>) -> Option<[u8; LEN]> {
    let policy = policy_of(limiter)?;
    let id = match hint {
        Some(id) if policies::is(id, &policy) => id,
        _ => policies::intern(&policy)?,
    };
    let mut out = [MARK; LEN];
    put(&mut out, 1, 2, u64::from(id))?;
    let fields: &[(u64, usize)] = match limiter {
        Limiter::TokenBucket(_, s) => &[(s.deficit, 6), (s.at.as_micros(), 7)],
        Limiter::Throttle(_, s) => &[(s.tat_ns, 8)],
        Limiter::Fixed(_, s) => &[(s.end_ms, 6), (s.count, 7)],
        Limiter::SlidingApprox(_, s) => &[(s.start_ms, 6), (s.previous, 3), (s.current, 4)],
        _ => return None,
    };
    let mut at = STATE;
    for &(n, width) in fields {
        put(&mut out, at, width, n)?;
        at += width;
    }
    Some(out)
}

/// The limiter a compact value holds; `None` if its id names no policy (never, for
/// bytes [`encode`] wrote in this process).
pub fn decode(bytes: &[u8; LEN]) -> Option<Limiter> {
    let policy = policies::get(id(bytes))?;
    let field = |at: usize, width: usize| take(bytes, at, width);
    Some(match policy {
        Policy::TokenBucket(p) => Limiter::TokenBucket(
            p,
            BucketState {
                deficit: field(STATE, 6)?,
                at: Timestamp::from_micros(field(STATE + 6, 7)?),
            },
        ),
        Policy::Throttle(p) => Limiter::Throttle(
            p,
            ThrottleState {
                tat_ns: field(STATE, 8)?,
            },
        ),
        Policy::Fixed(p) => Limiter::Fixed(
            p,
            WindowCount {
                end_ms: field(STATE, 6)?,
                count: field(STATE + 6, 7)?,
            },
        ),
        Policy::SlidingApprox(p) => Limiter::SlidingApprox(
            p,
            WindowPair {
                start_ms: field(STATE, 6)?,
                previous: field(STATE + 6, 3)?,
                current: field(STATE + 9, 4)?,
            },
        ),
        Policy::Sliding(_) => return None,
    })
}

/// Writes the low `width` bytes of `n` at `at`; `None` if `n` needs more.
fn put(out: &mut [u8; LEN], at: usize, width: usize, n: u64) -> Option<()> {
    if width < 8 && n >> (8 * width) != 0 {
        return None;
    }
    let le = n.to_le_bytes();
    out.get_mut(at..at + width)?
        .copy_from_slice(le.get(..width)?);
    Some(())
}

/// Reads `width` little-endian bytes at `at`.
fn take(bytes: &[u8; LEN], at: usize, width: usize) -> Option<u64> {
    let mut le = [0u8; 8];
    le.get_mut(..width)?
        .copy_from_slice(bytes.get(at..at + width)?);
    Some(u64::from_le_bytes(le))
}

#[cfg(test)]
mod tests;
