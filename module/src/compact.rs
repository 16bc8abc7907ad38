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
//! The 16 bytes are one little-endian `u128`: packed and unpacked with shifts.
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

/// Bits of the state (bytes 3..16).
const STATE_BITS: u32 = 104;

/// The policy id of a compact value.
pub fn id(bytes: &[u8; LEN]) -> u16 {
    let [_, low, high, ..] = *bytes;
    u16::from_le_bytes([low, high])
}

/// The compact layout of `limiter`, its policy interned (or found as `hint`, the id of
/// the value it replaces, when that names the same policy); `None` when it has none.
pub fn encode(limiter: &Limiter, hint: Option<u16>) -> Option<[u8; LEN]> {
    // The state's fields, low bits first, as (value, width in bits).
    let (policy, state) = match limiter {
        Limiter::TokenBucket(p, s) => (
            Policy::TokenBucket(*p),
            pack(&[(s.deficit, 48), (s.at.as_micros(), 56)])?,
        ),
        Limiter::Throttle(p, s) => (Policy::Throttle(*p), pack(&[(s.tat_ns, 64)])?),
        Limiter::Fixed(p, s) => (Policy::Fixed(*p), pack(&[(s.end_ms, 48), (s.count, 56)])?),
        Limiter::SlidingApprox(p, s) => (
            Policy::SlidingApprox(*p),
            pack(&[(s.start_ms, 48), (s.previous, 24), (s.current, 32)])?,
        ),
        _ => return None,
    };
    let id = match hint {
        Some(id) if policies::is(id, &policy) => id,
        _ => policies::intern(&policy)?,
    };
    let word = u128::from(MARK) | u128::from(id) << 8 | state << 24;
    Some(word.to_le_bytes())
}

/// The limiter a compact value holds; `None` if its id names no policy (never, for
/// bytes [`encode`] wrote in this process).
pub fn decode(bytes: &[u8; LEN]) -> Option<Limiter> {
    let policy = policies::get(id(bytes))?;
    let state = u128::from_le_bytes(*bytes) >> 24;
    // The field of `width` bits at bit `at` of the state.
    let field = |at: u32, width: u32| ((state >> at) & ((1u128 << width) - 1)) as u64;
    Some(match policy {
        Policy::TokenBucket(p) => Limiter::TokenBucket(
            p,
            BucketState {
                deficit: field(0, 48),
                at: Timestamp::from_micros(field(48, 56)),
            },
        ),
        Policy::Throttle(p) => Limiter::Throttle(
            p,
            ThrottleState {
                tat_ns: field(0, 64),
            },
        ),
        Policy::Fixed(p) => Limiter::Fixed(
            p,
            WindowCount {
                end_ms: field(0, 48),
                count: field(48, 56),
            },
        ),
        Policy::SlidingApprox(p) => Limiter::SlidingApprox(
            p,
            WindowPair {
                start_ms: field(0, 48),
                previous: field(48, 24),
                current: field(72, 32),
            },
        ),
        Policy::Sliding(_) => return None,
    })
}

/// The fields packed low bits first; `None` if a value needs more than its width.
fn pack(fields: &[(u64, u32)]) -> Option<u128> {
    let mut state = 0u128;
    let mut at = 0u32;
    for &(value, width) in fields {
        if width < 64 && value >> width != 0 {
            return None;
        }
        state |= u128::from(value) << at;
        at += width;
    }
    (at <= STATE_BITS).then_some(state)
}

#[cfg(test)]
mod tests;
