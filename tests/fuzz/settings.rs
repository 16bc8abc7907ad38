//! Settings: case counts, the seed, the bounds the fuzzer generates and the documented
//! ranges the oracle checks against, and the replaying test runner.

use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRunner};

/// Cases of the main properties unless `REDLIMIT_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 512;
/// The seed unless `REDLIMIT_FUZZ_SEED` says otherwise: every run replays the same cases.
const DEFAULT_SEED: u64 = 0x7265_646c_696d_6974;
/// The longest random string: 64 KiB.
pub const LONG: usize = 64 * 1024;
/// The module's largest accepted `redlimit.clock-offset-ms`.
pub const MAX_OFFSET_MS: i64 = 10_000_000_000_000;
/// A limiter key that expires later than this is stable for a whole batch.
pub const STABLE_TTL_MS: i64 = 60_000;
/// Backward clock moves at least this large are checked for "grants nothing more".
pub const MIN_BACKWARD_MS: i64 = 10_000;
/// The longest lease id the module accepts (`docs/commands.md`, RL.ACQUIRE).
pub const MAX_LEASE_ID_LEN: usize = 256;

// The documented ranges (`docs/commands.md`), written out here rather than taken from the
// core, so that the oracle notices when the module and the core move together.
/// Every duration argument: `refill_ms`, `window_ms`, `lease_ms` (Conventions, Ranges).
pub const MAX_DURATION_MS: u64 = 10_000_000_000_000;
/// Every count: `refill_tokens`, a fixed window's `limit` (Conventions, Ranges).
pub const MAX_COUNT: u64 = 1 << 62;
/// `capacity * refill_ms` and `MAXWAIT * refill_tokens` (RL.TOKENBUCKET, Ranges).
pub const MAX_BUCKET_PRODUCT: u64 = (1 << 62) / 1_000;
/// An exact sliding log's `limit` (RL.SLIDING).
pub const MAX_SLIDING_LIMIT: u64 = 1 << 16;
/// `limit` and `window_ms` of `RL.SLIDING ... APPROX`.
pub const MAX_APPROX: u64 = 1 << 40;
/// Leases held at once (RL.ACQUIRE).
pub const MAX_LEASES: u64 = 1_000;
/// RL.ALL's `numkeys`.
pub const MAX_ALL_KEYS: u64 = 32;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

pub fn cases() -> u32 {
    env_u64("REDLIMIT_FUZZ_CASES")
        .map_or(DEFAULT_CASES, |n| u32::try_from(n).unwrap_or(u32::MAX))
        .max(1)
}

/// A runner replaying the same cases on every run, without shrinking (the server keeps
/// state between cases, so a shrunk case would not replay the failure; failures name the
/// exact command instead) and without persistence files.
pub fn runner(cases: u32, salt: u64) -> TestRunner {
    let seed = env_u64("REDLIMIT_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    TestRunner::new(Config {
        cases,
        max_shrink_iters: 0,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        ..Config::default()
    })
}
