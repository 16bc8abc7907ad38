//! Progressive penalties (off by default): a caller refused again and again is blocked,
//! for longer each time (doubling up to a maximum). Both the refusals and the block
//! live in Redis, next to the caller's limits (same hash tag), so every instance sees
//! them: the refusals in a fixed window (`RL.FIXED`), the block as a token bucket of
//! one token refilled once per block (`RL.TOKENBUCKET 1 1 <block ms>`, taken when the
//! block starts; read with `RL.STATUS`, which uses the block's own duration).

use crate::{Policy, RateLimiter};
use std::time::Duration;

/// A rule's penalty: after `after` refusals within `window_ms`, block for `block_ms`,
/// doubled with every further refusal, at most `max_block_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Penalty {
    pub(crate) after: u64,
    pub(crate) window_ms: u64,
    pub(crate) block_ms: u64,
    pub(crate) max_block_ms: u64,
}

/// The suffixes of a caller's penalty keys (after `{prefix}:{rule:caller}:`): limit
/// names cannot end a key so (they are checked not to start with `!`).
const STRIKES: &str = "!penalty-strikes";
const BLOCK: &str = "!penalty-block";

impl Penalty {
    /// How long the caller whose keys start with `base` is still blocked, if it is.
    /// A server error reads as "not blocked": the limits still decide.
    pub(crate) async fn blocked(&self, limiter: &RateLimiter, base: &str) -> Option<Duration> {
        let status = limiter.status(format!("{base}{BLOCK}")).await.ok()??;
        if status.decision.allowed {
            return None;
        }
        status.decision.retry_after
    }

    /// The block `strikes` refusals earn: none before `after`, then `block_ms` doubled
    /// per refusal beyond it, at most `max_block_ms`.
    pub(crate) fn block_for(&self, strikes: u64) -> Option<u64> {
        let beyond = strikes.checked_sub(self.after)?;
        let factor = 1u64
            .checked_shl(u32::try_from(beyond).unwrap_or(u32::MAX))
            .unwrap_or(u64::MAX);
        Some(self.block_ms.saturating_mul(factor).min(self.max_block_ms))
    }

    /// Counts one refusal of the caller; starts a block when it has earned one, and
    /// says for how long.
    pub(crate) async fn strike(&self, limiter: &RateLimiter, base: &str) -> Option<Duration> {
        // Room for the refusals that can still lengthen the block (then it is at most).
        let room = self.after.saturating_add(64).min(redlimit_core::MAX_COUNT);
        let strikes = Policy::fixed(room, self.window_ms).ok()?;
        let counted = limiter
            .check(format!("{base}{STRIKES}"), &strikes)
            .await
            .ok()?;
        let total = counted.limit.saturating_sub(counted.remaining);
        let block_ms = self.block_for(total)?;
        let block = Policy::token_bucket(1, 1, block_ms).ok()?;
        let key = format!("{base}{BLOCK}");
        // A longer block replaces a shorter one still running: start afresh.
        let _ = limiter.reset(&[key.as_str()]).await;
        limiter.check(&key, &block).await.ok()?;
        Some(Duration::from_millis(block_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_double_from_the_threshold_up_to_the_maximum() {
        let penalty = Penalty {
            after: 3,
            window_ms: 3_600_000,
            block_ms: 1_000,
            max_block_ms: 10_000,
        };
        let blocks: Vec<Option<u64>> = (0..9).map(|s| penalty.block_for(s)).collect();
        assert_eq!(
            blocks,
            [
                None,
                None,
                None,
                Some(1_000),
                Some(2_000),
                Some(4_000),
                Some(8_000),
                Some(10_000),
                Some(10_000)
            ]
        );
        assert_eq!(penalty.block_for(u64::MAX), Some(10_000));
    }
}
