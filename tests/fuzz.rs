//! Property-based argument fuzzer for every `RL.*` command, against every available server.
//!
//! One server per flavor (Redis 7.0, Redis 8.2, Valkey 9.1) is started once and takes every
//! case of every property. A case is a batch of random commands — random bytes (non-UTF-8,
//! NUL, empty, up to 64 KiB), numbers at and beyond every boundary, options in any order,
//! repeated or missing, unknown words, wrong arity, keys of every other type and limiter
//! keys of other algorithms, random and mutated `RL.SETSTATE` states, random clock offsets
//! (backwards too), `COMMAND GETKEYS` — sent over RESP2 and RESP3, inside MULTI/EXEC and
//! inside EVAL scripts.
//!
//! Every reply is checked against an oracle written from `shared/spec/commands.md` and
//! `docs/commands.md`: a well-formed decision / status / count / OK where the arguments are
//! valid, else an error naming what is wrong (`ERR <argument> must be ...`, `ERR syntax
//! error near '<token>'` and the other syntax errors word for word, the standard arity
//! error, `WRONGTYPE ...`). Decisions are flat arrays of five integers under RESP2 and RESP3
//! alike. The oracle knows what each key holds: it probes the keys of a batch first and
//! follows every reply and every move of the test clock (a key past its idle moment is an
//! absent key). After each batch the server
//! must answer PING and the keys of other types must be untouched; at the end its log must
//! show no panic.
//!
//! The `states` property stores valid and mutated encodings, and encodings written by hand
//! with numbers at and beyond every bound, with `RL.SETSTATE` (accepted exactly when
//! `redlimit_core::Limiter::decode` accepts them, which must refuse every policy out of the
//! documented ranges), then reads them back with RL.STATUS (exactly its fields, each once,
//! the policy within the ranges), DUMP/RESTORE, COPY, DEBUG DIGEST-VALUE and MEMORY USAGE,
//! and calls every command on them.
//!
//! The `invariants` property sends valid random traffic and checks what must always hold:
//! a denied call, a PEEK and a COST 0 change nothing (byte-identical DUMP and expiry, an
//! identical RL.STATUS before and after at one instant where the server freezes time in
//! MULTI/EXEC, and a WATCH on the key survives) while a counted call aborts a WATCH; a PEEK
//! answers exactly what the call itself answers; `remaining <= limit`; `retry_after_ms <=
//! reset_after_ms`; a denied request is allowed once its `retry_after_ms` (+1 ms) has passed
//! and finds the limiter full once its `reset_after_ms` (+1 ms) has — also right after the
//! clock moved back, where both include the wait for the clock; and a clock moved backwards
//! never grants more than the state granted before, nor more than its last decision left.
//!
//! Settings: `REDLIMIT_FUZZ_CASES` (cases of the `arguments` and `states` properties; the
//! others are scaled from it; default 512), `REDLIMIT_FUZZ_SEED` (default fixed), and the
//! harness's `REDLIMIT_SERVERS` and `REDLIMIT_MODULE`. Run with
//! `cargo build -p redlimit-module && cargo test --test fuzz -- --nocapture`.
//!
//! The oracle knows every documented range: durations (`refill_ms`, `window_ms`, `lease_ms`)
//! up to 10^13 ms, counts up to 2^62, an exact sliding log up to 2^20, APPROX up to 2^40,
//! leases up to 100,000, and a token bucket's products up to 2^62 / 1000. A value beyond
//! its bound must be the error giving it (`ERR window_ms must be at most 10000000000000`),
//! never a success, and no reply field may be saturated at `i64::MAX`. Intended
//! compatibility is the one tolerance by design: RL.THROTTLE's `remaining` is redis-cell's
//! (see [`throttle_most_remaining`]).
//!
//! The module bugs the fuzzer found are fixed; regression tests at the end pin the fixed
//! behaviour exactly (ranges refused, retry/reset after a clock step back, RL.STATUS field
//! names, states with times beyond the year 5000 refused).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestCaseError, TestRunner};
use redis::{Cmd, ConnectionLike, Value};
use redlimit_core::{
    Algorithm, BucketState, Concurrency, FixedWindow, Limiter, Policy, Request, SlidingCounter,
    SlidingWindow, Throttle, ThrottleState, Timestamp, TokenBucket,
};
use redlimit_test_support::{
    Flavor, Server, ServerBinary, ServerBuilder, available_servers, module_path,
};

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

/// Cases of the main properties unless `REDLIMIT_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 512;
/// The seed unless `REDLIMIT_FUZZ_SEED` says otherwise: every run replays the same cases.
const DEFAULT_SEED: u64 = 0x7265_646c_696d_6974;
/// The longest random string: 64 KiB.
const LONG: usize = 64 * 1024;
/// The module's largest accepted `redlimit.clock-offset-ms`.
const MAX_OFFSET_MS: i64 = 10_000_000_000_000;
/// A limiter key that expires later than this is stable for a whole batch.
const STABLE_TTL_MS: i64 = 60_000;
/// Backward clock moves at least this large are checked for "grants nothing more".
const MIN_BACKWARD_MS: i64 = 10_000;
/// The longest lease id the module accepts (`docs/commands.md`, RL.ACQUIRE).
const MAX_LEASE_ID_LEN: usize = 256;

// The documented ranges (`docs/commands.md`), written out here rather than taken from the
// core, so that the oracle notices when the module and the core move together.
/// Every duration argument: `refill_ms`, `window_ms`, `lease_ms` (Conventions, Ranges).
const MAX_DURATION_MS: u64 = 10_000_000_000_000;
/// Every count: `refill_tokens`, a fixed window's `limit` (Conventions, Ranges).
const MAX_COUNT: u64 = 1 << 62;
/// `capacity * refill_ms` and `MAXWAIT * refill_tokens` (RL.TOKENBUCKET, Ranges).
const MAX_BUCKET_PRODUCT: u64 = (1 << 62) / 1_000;
/// An exact sliding log's `limit` (RL.SLIDING).
const MAX_SLIDING_LIMIT: u64 = 1 << 16;
/// `limit` and `window_ms` of `RL.SLIDING ... APPROX`.
const MAX_APPROX: u64 = 1 << 40;
/// Leases held at once (RL.ACQUIRE).
const MAX_LEASES: u64 = 1_000;
/// RL.ALL's `numkeys`.
const MAX_ALL_KEYS: u64 = 32;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn cases() -> u32 {
    env_u64("REDLIMIT_FUZZ_CASES")
        .map_or(DEFAULT_CASES, |n| u32::try_from(n).unwrap_or(u32::MAX))
        .max(1)
}

/// A runner replaying the same cases on every run, without shrinking (the server keeps
/// state between cases, so a shrunk case would not replay the failure; failures name the
/// exact command instead) and without persistence files.
fn runner(cases: u32, salt: u64) -> TestRunner {
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

// ---------------------------------------------------------------------------------------
// Commands and calls
// ---------------------------------------------------------------------------------------

/// The commands under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Command {
    TokenBucket,
    Throttle,
    Sliding,
    Fixed,
    All,
    Acquire,
    Release,
    Reset,
    Status,
    SetState,
}

impl Command {
    /// The name as the server registers it (and prints it in arity errors).
    fn name(self) -> &'static str {
        match self {
            Command::TokenBucket => "rl.tokenbucket",
            Command::Throttle => "rl.throttle",
            Command::Sliding => "rl.sliding",
            Command::Fixed => "rl.fixed",
            Command::All => "rl.all",
            Command::Acquire => "rl.acquire",
            Command::Release => "rl.release",
            Command::Reset => "rl.reset",
            Command::Status => "rl.status",
            Command::SetState => "rl.setstate",
        }
    }

    /// Argument counts (after the name) the server refuses itself, by the declared arity,
    /// before the module runs — and at MULTI queue time.
    fn server_rejects_arity(self, args: usize) -> bool {
        match self {
            Command::TokenBucket | Command::Throttle | Command::All => args < 4,
            Command::Sliding | Command::Fixed => args < 3,
            Command::Acquire => args != 4,
            Command::Release | Command::SetState => args != 2,
            Command::Reset => args < 1,
            Command::Status => args != 1,
        }
    }
}

/// One command line: a (maybe mixed-case) name and its raw arguments.
#[derive(Clone)]
struct Call {
    command: Command,
    name: Vec<u8>,
    args: Vec<Vec<u8>>,
}

impl Call {
    fn new(command: Command, args: Vec<Vec<u8>>) -> Self {
        Call {
            command,
            name: command.name().to_ascii_uppercase().into_bytes(),
            args,
        }
    }

    fn cmd(&self) -> Cmd {
        let mut cmd = Cmd::new();
        cmd.arg(&self.name[..]);
        for arg in &self.args {
            cmd.arg(&arg[..]);
        }
        cmd
    }

    /// The keys the command may touch.
    fn keys(&self) -> &[Vec<u8>] {
        match self.command {
            Command::Reset => &self.args,
            Command::All => {
                let numkeys = match self.args.first().map(|n| read_number(n)) {
                    Some(Reading::Exact(n) | Reading::Odd(n)) => n,
                    _ => 0,
                };
                let end = usize::try_from(numkeys)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1)
                    .min(self.args.len());
                self.args.get(1..end).unwrap_or_default()
            }
            _ => self.args.get(..1).unwrap_or_default(),
        }
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&show(&self.name))?;
        for arg in &self.args {
            write!(f, " {}", show(arg))?;
        }
        Ok(())
    }
}

/// Bytes as a quoted, escaped string, abbreviated when long.
fn show(bytes: &[u8]) -> String {
    const HEAD: usize = 40;
    match bytes.get(..HEAD) {
        Some(head) if bytes.len() > HEAD + 8 => {
            if bytes.iter().all(|b| Some(b) == bytes.first()) {
                format!("\"{}\"x{}", head[..1].escape_ascii(), bytes.len())
            } else {
                format!("\"{}\"...({} bytes)", head.escape_ascii(), bytes.len())
            }
        }
        _ => format!("\"{}\"", bytes.escape_ascii()),
    }
}

fn decimal(n: impl ToString) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn bytes(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Numbers at and beyond every boundary the commands have, and things that look like numbers.
const BOUNDARIES: &[&str] = &[
    "0",
    "1",
    "-1",
    "-0",
    "00",
    "007",
    "-00",
    "2",
    "18446744073709551615",
    "18446744073709551616",
    "-18446744073709551615",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "1000000000000000000000000000000",
    "4611686018427387904",
    "4611686018427387",
    "4611686018427388",
    "4611686018427387903",
    "4611686018427387905",
    "1099511627776",
    "1099511627777",
    "65536",
    "65537",
    "1000",
    "1001",
    "9223372036",
    "9223372037",
    "9223372036854775",
    "1000000000",
    "1000000001",
    "10000000000000",
    "10000000000001",
    "1e3",
    " 1",
    "1 ",
    "+1",
    "0x10",
    "1.5",
    "1.0",
    "",
    "-",
    "\0",
    "1\0",
    "\u{661}",
    "inf",
    "nan",
    "- 1",
    "--1",
];

/// Keys of other types, each with its `TYPE`.
const OTHER_KEYS: [(&str, &str); 6] = [
    ("fz:string", "string"),
    ("fz:list", "list"),
    ("fz:hash", "hash"),
    ("fz:set", "set"),
    ("fz:zset", "zset"),
    ("fz:stream", "stream"),
];
/// Limiter keys seeded before every batch, one per algorithm, far from expiring.
const SEEDED_KEYS: [&str; 6] = [
    "fz:tokenbucket",
    "fz:throttle",
    "fz:fixed",
    "fz:sliding",
    "fz:approx",
    "fz:leases",
];
/// Keys cleared before every batch.
const FREE_KEYS: [&str; 2] = ["fz:a", "fz:b"];
/// Lease ids the calls share, so that they meet.
const LEASE_IDS: [&str; 3] = ["job-1", "job-2", "job-3"];

fn pool() -> Vec<&'static str> {
    let mut pool: Vec<&str> = OTHER_KEYS.iter().map(|(key, _)| *key).collect();
    pool.extend(SEEDED_KEYS);
    pool.extend(FREE_KEYS);
    pool
}

fn is_pool_key(key: &[u8]) -> bool {
    pool().iter().any(|k| k.as_bytes() == key)
}

/// A long run of one byte: digits make huge numbers, others long junk.
fn long_string() -> BoxedStrategy<Vec<u8>> {
    (0..=LONG, select(b"09aZ\0\xff- ".to_vec()))
        .prop_map(|(len, byte)| vec![byte; len])
        .boxed()
}

/// Random bytes: mostly short, sometimes up to 64 KiB.
fn junk() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..24),
        1 => vec(any::<u8>(), 0..512),
        1 => long_string(),
    ]
    .boxed()
}

/// A numeric argument: valid small values, boundaries, wide random integers, junk.
fn number() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => (1u64..=20).prop_map(decimal),
        3 => (0u64..=100_000).prop_map(decimal),
        3 => select(BOUNDARIES).prop_map(bytes),
        1 => any::<u64>().prop_map(decimal),
        1 => any::<i64>().prop_map(decimal),
        1 => (1usize..=60, select(vec![b'0', b'9'])).prop_map(|(n, digit)| {
            let mut s = vec![b'1'];
            s.extend(std::iter::repeat_n(digit, n));
            s
        }),
        1 => junk(),
    ]
    .boxed()
}

fn key() -> BoxedStrategy<Vec<u8>> {
    key_in(&[])
}

/// A key: often one of `home` (the keys a command can use), else any key of the pool,
/// random bytes, or a long run of one byte.
fn key_in(home: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    let home = if home.is_empty() {
        pool()
    } else {
        home.to_vec()
    };
    prop_oneof![
        8 => select(home).prop_map(bytes),
        2 => select(pool()).prop_map(bytes),
        2 => vec(any::<u8>(), 0..12),
        1 => (0..=LONG, any::<u8>()).prop_map(|(len, byte)| vec![byte; len]),
    ]
    .boxed()
}

/// The keys each limiting command can use without WRONGTYPE.
const BUCKET_HOME: &[&str] = &["fz:tokenbucket", "fz:a", "fz:b"];
const THROTTLE_HOME: &[&str] = &["fz:throttle", "fz:a", "fz:b"];
const SLIDING_HOME: &[&str] = &["fz:sliding", "fz:approx", "fz:a", "fz:b"];
const FIXED_HOME: &[&str] = &["fz:fixed", "fz:a", "fz:b"];
const LEASES_HOME: &[&str] = &["fz:leases", "fz:a", "fz:b"];
const ALL_HOME: &[&str] = &[
    "fz:tokenbucket",
    "fz:fixed",
    "fz:sliding",
    "fz:approx",
    "fz:a",
    "fz:b",
];

fn lease_id() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => select(LEASE_IDS.to_vec()).prop_map(bytes),
        2 => vec(any::<u8>(), 0..16),
        1 => select(vec![MAX_LEASE_ID_LEN, MAX_LEASE_ID_LEN + 1, 0])
            .prop_map(|len| vec![b'x'; len]),
        1 => long_string(),
    ]
    .boxed()
}

/// `upper` with the letters lowered where `mask` says so.
fn mixed_case(upper: &str, mask: &[bool]) -> Vec<u8> {
    upper
        .bytes()
        .zip(mask.iter().chain(std::iter::repeat(&false)))
        .map(|(b, &lower)| if lower { b.to_ascii_lowercase() } else { b })
        .collect()
}

/// A word in upper case, lower case, or any mix.
fn spelled(word: &'static str) -> BoxedStrategy<Vec<u8>> {
    let upper = word.to_ascii_uppercase();
    prop_oneof![
        2 => Just(bytes(&upper)),
        1 => Just(bytes(&word.to_ascii_lowercase())),
        1 => vec(any::<bool>(), word.len()).prop_map(move |mask| mixed_case(&upper, &mask)),
    ]
    .boxed()
}

fn option_word() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => prop_oneof![
            spelled("COST"),
            spelled("PEEK"),
            spelled("MAXWAIT"),
            spelled("APPROX"),
        ],
        1 => select(vec!["COSTS", "PEEKS", "MAX", "WAIT", "COST\0", "", "-COST", "PEEK ", "FIXED"])
            .prop_map(bytes),
        1 => junk(),
    ]
    .boxed()
}

/// Options in any order: with values, without, repeated, unknown.
fn options() -> BoxedStrategy<Vec<Vec<u8>>> {
    vec(
        prop_oneof![
            3 => (option_word(), number()).prop_map(|(w, n)| vec![w, n]),
            2 => option_word().prop_map(|w| vec![w]),
            1 => number().prop_map(|n| vec![n]),
        ],
        0..5,
    )
    .prop_map(|groups| groups.concat())
    .boxed()
}

/// Arguments that are usually well shaped, cut to a random length now and then.
fn shaped(args: BoxedStrategy<Vec<Vec<u8>>>) -> BoxedStrategy<Vec<Vec<u8>>> {
    (
        args,
        prop_oneof![8 => Just(None), 1 => (0usize..12).prop_map(Some)],
    )
        .prop_map(|(mut args, cut)| {
            if let Some(len) = cut {
                args.truncate(len);
            }
            args
        })
        .boxed()
}

/// Anything: a key then 0..12 random values, or no key at all.
fn chaos() -> BoxedStrategy<Vec<Vec<u8>>> {
    let value = prop_oneof![number(), junk(), option_word(), lease_id()];
    prop_oneof![
        3 => (key(), vec(value.clone(), 0..12)).prop_map(|(key, rest)| [vec![key], rest].concat()),
        1 => vec(value, 0..12),
    ]
    .boxed()
}

/// A key, `numbers` numeric arguments, then options.
fn positional(home: &'static [&'static str], numbers: usize) -> BoxedStrategy<Vec<Vec<u8>>> {
    shaped(
        (key_in(home), vec(number(), numbers), options())
            .prop_map(|(key, numbers, options)| [vec![key], numbers, options].concat())
            .boxed(),
    )
}

fn throttle_args() -> BoxedStrategy<Vec<Vec<u8>>> {
    shaped(
        (
            key_in(THROTTLE_HOME),
            vec(number(), 3),
            proptest::option::of(number()),
            prop_oneof![6 => Just(vec![]), 1 => vec(prop_oneof![number(), junk()], 0..3)],
        )
            .prop_map(|(key, numbers, quantity, extra)| {
                [vec![key], numbers, quantity.into_iter().collect(), extra].concat()
            })
            .boxed(),
    )
}

fn acquire_args() -> BoxedStrategy<Vec<Vec<u8>>> {
    shaped(
        (key_in(LEASES_HOME), vec(number(), 2), lease_id())
            .prop_map(|(key, numbers, id)| [vec![key], numbers, vec![id]].concat())
            .boxed(),
    )
}

/// One `RL.ALL` policy: `TOKENBUCKET c r ms` | `FIXED l ms` | `SLIDING l ms [APPROX]`.
fn all_policy() -> BoxedStrategy<Vec<Vec<u8>>> {
    prop_oneof![
        3 => (spelled("TOKENBUCKET"), vec(number(), 3)).prop_map(|(w, n)| [vec![w], n].concat()),
        3 => (spelled("FIXED"), vec(number(), 2)).prop_map(|(w, n)| [vec![w], n].concat()),
        3 => (spelled("SLIDING"), vec(number(), 2), proptest::option::weighted(0.3, spelled("APPROX")))
            .prop_map(|(w, n, approx)| [vec![w], n, approx.into_iter().collect()].concat()),
        1 => (option_word(), vec(number(), 0..3)).prop_map(|(w, n)| [vec![w], n].concat()),
    ]
    .boxed()
}

fn all_args() -> BoxedStrategy<Vec<Vec<u8>>> {
    let cost_peek = vec(
        prop_oneof![
            2 => (spelled("COST"), number()).prop_map(|(w, n)| vec![w, n]),
            1 => spelled("PEEK").prop_map(|w| vec![w]),
            1 => option_word().prop_map(|w| vec![w]),
        ],
        0..3,
    );
    shaped(
        (1usize..=4)
            .prop_flat_map(move |n| {
                (
                    prop_oneof![8 => Just(decimal(n)), 1 => number()],
                    vec(key_in(ALL_HOME), n),
                    vec(all_policy(), n),
                    cost_peek.clone(),
                )
            })
            .prop_map(|(numkeys, keys, policies, options)| {
                [vec![numkeys], keys, policies.concat(), options.concat()].concat()
            })
            .boxed(),
    )
}

fn state_call_args() -> BoxedStrategy<Vec<Vec<u8>>> {
    prop_oneof![
        6 => (key(), state_bytes()).prop_map(|(k, s)| vec![k, s]),
        1 => vec(prop_oneof![key(), state_bytes()], 0..4),
    ]
    .boxed()
}

fn call() -> BoxedStrategy<Call> {
    let named = |command: Command, shaped: BoxedStrategy<Vec<Vec<u8>>>| {
        (
            spelled(command.name()),
            prop_oneof![6 => shaped, 1 => chaos()],
        )
            .prop_map(move |(name, args)| Call {
                command,
                name,
                args,
            })
            .boxed()
    };
    prop_oneof![
        4 => named(Command::TokenBucket, positional(BUCKET_HOME, 3)),
        3 => named(Command::Throttle, throttle_args()),
        3 => named(Command::Sliding, positional(SLIDING_HOME, 2)),
        2 => named(Command::Fixed, positional(FIXED_HOME, 2)),
        3 => named(Command::All, all_args()),
        2 => named(Command::Acquire, acquire_args()),
        1 => named(Command::Release, shaped((key_in(LEASES_HOME), lease_id()).prop_map(|(k, id)| vec![k, id]).boxed())),
        1 => named(Command::Reset, vec(key(), 0..6).boxed()),
        1 => named(
            Command::Status,
            prop_oneof![6 => key().prop_map(|k| vec![k]), 1 => vec(key(), 0..3)].boxed()
        ),
        2 => named(Command::SetState, state_call_args()),
    ]
    .boxed()
}

/// Microseconds since the Unix epoch on this machine (the servers run here too).
fn wall_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn bucket_policy() -> BoxedStrategy<TokenBucket> {
    let wide = |small: u64| prop_oneof![4 => 1..=small, 1 => any::<u64>()];
    (wide(1_000), wide(1_000), wide(100_000))
        .prop_map(|(capacity, refill, period)| {
            TokenBucket::new(capacity, refill, period).unwrap_or_else(|_| {
                TokenBucket::new(
                    capacity % 1_000 + 1,
                    refill % 1_000 + 1,
                    period % 100_000 + 1,
                )
                .expect("a small bucket is valid")
            })
        })
        .boxed()
}

fn throttle_policy() -> BoxedStrategy<Throttle> {
    let wide = |small: u64| prop_oneof![4 => 0..=small, 1 => any::<u64>()];
    (wide(100), wide(1_000), wide(100_000))
        .prop_map(|(burst, count, period)| {
            Throttle::new(burst, count, period).unwrap_or_else(|_| {
                Throttle::new(burst % 100, count % 1_000 + 1, period % 100_000 + 1)
                    .expect("a small throttle is valid")
            })
        })
        .boxed()
}

/// Token buckets and throttles with raw states anywhere: now-ish, the epoch, any u64.
fn raw_limiter() -> BoxedStrategy<Limiter> {
    let now = wall_micros();
    let micros = prop_oneof![
        1 => Just(0u64),
        3 => now - 10_000_000_000..now + 10_000_000_000,
        1 => any::<u64>(),
    ];
    let nanos = prop_oneof![
        1 => Just(0u64),
        3 => now * 1_000 - 10_000_000_000_000..now * 1_000 + 10_000_000_000_000,
        1 => any::<u64>(),
    ];
    let deficit = prop_oneof![
        1 => Just(0u64),
        3 => 0u64..1_000_000_000,
        1 => 0u64..1 << 62,
        1 => any::<u64>(),
    ];
    prop_oneof![
        (bucket_policy(), deficit, micros).prop_map(|(policy, deficit, at)| {
            let at = Timestamp::from_micros(at);
            Limiter::TokenBucket(policy, BucketState { deficit, at })
        }),
        (throttle_policy(), nanos)
            .prop_map(|(policy, tat_ns)| Limiter::Throttle(policy, ThrottleState { tat_ns })),
    ]
    .boxed()
}

/// A policy of any algorithm, leases included.
#[derive(Clone, Copy, Debug)]
enum AnyPolicy {
    Limit(Policy),
    Leases(Concurrency),
}

fn any_policy() -> BoxedStrategy<AnyPolicy> {
    let window = || (1u64..=10, 1u64..=100_000);
    prop_oneof![
        (1u64..=10, 1u64..=5, 1u64..=10_000).prop_map(|(c, r, ms)| AnyPolicy::Limit(
            Policy::TokenBucket(TokenBucket::new(c, r, ms).expect("valid"))
        )),
        (0u64..=10, 1u64..=10, 1u64..=100).prop_map(|(b, c, p)| AnyPolicy::Limit(
            Policy::Throttle(Throttle::new(b, c, p).expect("valid"))
        )),
        window().prop_map(|(l, ms)| AnyPolicy::Limit(Policy::Fixed(
            FixedWindow::new(l, ms).expect("valid")
        ))),
        window().prop_map(|(l, ms)| AnyPolicy::Limit(Policy::Sliding(
            SlidingWindow::new(l, ms).expect("valid")
        ))),
        window().prop_map(|(l, ms)| AnyPolicy::Limit(Policy::SlidingApprox(
            SlidingCounter::new(l, ms).expect("valid")
        ))),
        window().prop_map(|(l, ms)| AnyPolicy::Leases(Concurrency::new(l, ms).expect("valid"))),
    ]
    .boxed()
}

/// Limiters of every algorithm, as the core leaves them after a few random calls.
fn lived_limiter() -> BoxedStrategy<Limiter> {
    let now = wall_micros();
    (
        any_policy(),
        now - 100_000_000..now + 100_000_000,
        vec(
            (0u64..5_000_000, 0u64..4, select(LEASE_IDS.to_vec())),
            1..10,
        ),
    )
        .prop_filter_map("no call stored anything", |(policy, start, calls)| {
            let mut stored: Option<Limiter> = None;
            let mut now = start;
            for (elapsed, cost, id) in calls {
                now += elapsed;
                let at = Timestamp::from_micros(now);
                match policy {
                    AnyPolicy::Limit(policy) => {
                        let outcome = policy.decide(stored.as_ref(), at, Request::new(cost));
                        if let Ok(update) = outcome.map(|o| o.update) {
                            stored = update.or(stored);
                        }
                    }
                    AnyPolicy::Leases(policy) => {
                        let held = match &stored {
                            Some(Limiter::Concurrency(_, leases)) => Some(&**leases),
                            _ => None,
                        };
                        let outcome = policy.acquire(held, at, id.as_bytes(), false);
                        if let Some(leases) = outcome.update {
                            stored = Some(Limiter::Concurrency(policy, Box::new(leases)));
                        }
                    }
                }
            }
            stored
        })
        .boxed()
}

fn limiter() -> BoxedStrategy<Limiter> {
    prop_oneof![raw_limiter(), lived_limiter()].boxed()
}

/// One change to an encoded state.
#[derive(Clone, Copy, Debug)]
enum Mutation {
    Keep,
    FlipBit(usize, u8),
    Truncate(usize),
    Append(u8),
    Insert(usize, u8),
    Replace(usize, u8),
    Remove(usize),
}

impl Mutation {
    fn apply(self, mut state: Vec<u8>) -> Vec<u8> {
        let len = state.len().max(1);
        match self {
            Mutation::Keep => {}
            Mutation::FlipBit(at, bit) => {
                if let Some(byte) = state.get_mut(at % len) {
                    *byte ^= 1 << (bit % 8);
                }
            }
            Mutation::Truncate(at) => state.truncate(at % len),
            Mutation::Append(byte) => state.push(byte),
            Mutation::Insert(at, byte) => state.insert(at % (state.len() + 1), byte),
            Mutation::Replace(at, byte) => {
                if let Some(slot) = state.get_mut(at % len) {
                    *slot = byte;
                }
            }
            Mutation::Remove(at) => {
                if !state.is_empty() {
                    state.remove(at % len);
                }
            }
        }
        state
    }
}

fn mutation() -> BoxedStrategy<Mutation> {
    prop_oneof![
        3 => Just(Mutation::Keep),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        1 => any::<usize>().prop_map(Mutation::Truncate),
        1 => any::<u8>().prop_map(Mutation::Append),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Insert(at, b)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Replace(at, b)),
        1 => any::<usize>().prop_map(Mutation::Remove),
    ]
    .boxed()
}

/// `numbers` as unsigned LEB128 varints, as the stored encoding writes them.
fn varints(numbers: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    for &n in numbers {
        let mut n = n;
        while n >= 0x80 {
            out.push(n.to_le_bytes()[0] | 0x80);
            n >>= 7;
        }
        out.push(n.to_le_bytes()[0]);
    }
    out
}

/// A stored state written by hand: the version byte, the algorithm's tag, then `numbers`
/// as varints (`core/src/encoding.rs`).
fn hand_state(tag: u8, numbers: &[u64]) -> Vec<u8> {
    [vec![1, tag], varints(numbers)].concat()
}

/// A state written by hand whose numbers (policy and state) sit at and beyond every
/// documented bound: accepted exactly when the policy is within the ranges.
fn bounded_state() -> BoxedStrategy<Vec<u8>> {
    let now_ms = wall_micros() / 1_000;
    let numbers = vec![
        0,
        1,
        2,
        1_000,
        MAX_LEASES,
        MAX_LEASES + 1,
        MAX_SLIDING_LIMIT,
        MAX_SLIDING_LIMIT + 1,
        MAX_APPROX,
        MAX_APPROX + 1,
        461,
        462,
        MAX_BUCKET_PRODUCT,
        MAX_BUCKET_PRODUCT + 1,
        MAX_DURATION_MS,
        MAX_DURATION_MS + 1,
        MAX_COUNT,
        MAX_COUNT + 1,
        i64::MAX.unsigned_abs(),
        u64::MAX,
        now_ms,
        now_ms * 1_000,
    ];
    (1u8..=6, vec(select(numbers), 5))
        .prop_map(|(tag, mut numbers)| {
            // Bucket and APPROX have five numbers, throttle and fixed four, the sliding
            // log and leases three (then no entries, no leases).
            let count = match tag {
                1 | 5 => 5,
                2 | 3 => 4,
                _ => 3,
            };
            numbers.truncate(count);
            if tag == 6 {
                numbers[2] = 0;
            }
            hand_state(tag, &numbers)
        })
        .boxed()
}

/// A state argument: a valid encoding (maybe mutated), one at the bounds, a valid header
/// then noise, or junk.
fn state_bytes() -> BoxedStrategy<Vec<u8>> {
    let headers: Vec<Vec<u8>> = (0u8..=7)
        .map(|tag| vec![1, tag])
        .chain([vec![1], vec![0, 1], vec![2, 1]])
        .collect();
    prop_oneof![
        4 => (limiter(), mutation()).prop_map(|(limiter, m)| m.apply(limiter.encode())),
        2 => bounded_state(),
        1 => (select(headers), vec(any::<u8>(), 0..24)).prop_map(|(h, rest)| [h, rest].concat()),
        1 => junk(),
    ]
    .boxed()
}

/// A `redlimit.clock-offset-ms` value: valid (up and down), out of range, not a number.
fn offset_value() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => (0..=MAX_OFFSET_MS).prop_map(decimal),
        3 => (0i64..=100_000_000).prop_map(decimal),
        1 => select(vec![0, MAX_OFFSET_MS, MAX_OFFSET_MS + 1, -1, i64::MIN, i64::MAX])
            .prop_map(decimal),
        1 => select(BOUNDARIES).prop_map(bytes),
        1 => any::<i64>().prop_map(decimal),
        1 => junk(),
    ]
    .boxed()
}

/// One step of a plain batch.
#[derive(Clone, Debug)]
enum Step {
    Call { call: Call, resp3: bool },
    ClockOffset(Vec<u8>),
    GetKeys(Call),
}

fn steps() -> BoxedStrategy<Vec<Step>> {
    vec(
        prop_oneof![
            20 => (call(), any::<bool>()).prop_map(|(call, resp3)| Step::Call { call, resp3 }),
            1 => offset_value().prop_map(Step::ClockOffset),
            1 => call().prop_map(Step::GetKeys),
        ],
        1..=24,
    )
    .boxed()
}

// ---------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------

/// What the fuzzer knows a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyState {
    Missing,
    /// A value of another type (never expires, never changed by `RL.*`).
    Other,
    /// A limiter; `may_vanish` when it may expire (become missing) at any moment.
    Limiter {
        algorithm: Algorithm,
        may_vanish: bool,
    },
}

type Keyspace = HashMap<Vec<u8>, KeyState>;

/// An error reply the contract allows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Failure {
    Arity,
    /// `ERR syntax error...` naming the offending token: the whole text.
    Syntax(String),
    /// Another error whose whole text the contract fixes (RL.ALL's policy count, a
    /// throttle's ranges as the core words them).
    Exact(String),
    Argument(&'static str),
    /// `ERR <argument> must be at most <bound>` (maybe followed by why, e.g. `when
    /// refill_ms is 1`): a number beyond a documented range.
    Bound(&'static str, u64),
    WrongType,
    BadState,
}

impl Failure {
    fn matches(&self, text: &str, command: Command, script: bool) -> bool {
        match self {
            Failure::Arity => {
                let standard = format!(
                    "ERR wrong number of arguments for '{}' command",
                    command.name()
                );
                text == standard
                    || script
                        && (text.starts_with(&standard)
                            || text.starts_with("ERR Wrong number of args calling"))
            }
            // Scripts pass these texts through unchanged.
            Failure::Syntax(exact) | Failure::Exact(exact) => text == exact,
            Failure::Argument(name) => text.starts_with(&format!("ERR {name} must be ")),
            Failure::Bound(name, most) => {
                let exact = format!("ERR {name} must be at most {most}");
                text == exact || text.starts_with(&format!("{exact} "))
            }
            Failure::WrongType => text.starts_with("WRONGTYPE "),
            Failure::BadState => text.starts_with("ERR state must be a redlimit state"),
        }
    }
}

/// What a valid limiting call must answer.
#[derive(Clone, Copy, Debug)]
struct Rule {
    algorithm: Algorithm,
    limit: u64,
    /// The request can never succeed (cost above what the policy can ever grant).
    never: bool,
    max_wait: u64,
    /// An allowed request changes the state (not a PEEK, not a zero cost).
    writes: bool,
    /// The largest `remaining`: the limit, except for throttles (see
    /// [`throttle_most_remaining`]).
    most_remaining: u64,
}

impl Rule {
    /// A request of `cost` under a plain `limit` (windows, buckets without MAXWAIT).
    fn simple(algorithm: Algorithm, limit: u64, cost: u64, peek: bool) -> Self {
        Rule {
            algorithm,
            limit,
            never: cost > limit,
            max_wait: 0,
            writes: !peek && cost > 0,
            most_remaining: limit,
        }
    }
}

/// The largest `remaining` RL.THROTTLE reports, as redis-cell computes it: it divides the
/// tolerance by the emission interval in whole microseconds, which exceeds `max_burst + 1`
/// when the interval is not a whole number of microseconds (e.g. `RL.THROTTLE k 19959
/// 94251 6` answers `remaining` 20168 for a limit of 19960, as `CL.THROTTLE` would).
/// The contract asks for redis-cell's replies, so the fuzzer accepts that bound.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
fn throttle_most_remaining(max_burst: u64, count: u64, period_s: u64) -> u64 {
    let interval = ((period_s as f64 * 1e9) / count as f64) as u64;
    let tolerance = u128::from(interval) * (u128::from(max_burst) + 1);
    let most = if interval >= 1_000 {
        (tolerance / 1_000) as f64 / (interval / 1_000) as f64
    } else {
        tolerance as f64 / interval.max(1) as f64
    };
    (most as u64).max(max_burst.saturating_add(1))
}

/// A success reply the contract requires.
#[derive(Clone, Debug)]
enum Success {
    Decision(Rule),
    /// `RL.ALL`: one rule per key, in order.
    All(Vec<Rule>),
    Status(KeyState),
    Count {
        min: i64,
        max: i64,
    },
    Released {
        held: bool,
    },
    Stored(Algorithm),
}

/// The replies the contract allows for one call.
#[derive(Debug, Default)]
struct Expect {
    failures: Vec<Failure>,
    success: Option<Success>,
    /// The core refuses a policy the documented ranges allow: whatever the module answers,
    /// the call fails the property.
    disagreement: Option<String>,
}

/// Collects what is wrong with a call. A *hard* failure forbids success; a *soft* one (a
/// spelling the spec does not settle, a key that may have expired) allows both.
#[derive(Default)]
struct Oracle {
    failures: Vec<Failure>,
    hard: bool,
    disagreement: Option<String>,
}

/// How a numeric argument reads.
#[derive(Clone, Copy, Debug)]
enum Reading {
    Exact(u64),
    /// `-0`, `007`: integers, not in the canonical spelling Redis itself requires.
    Odd(u64),
    NotANumber,
}

fn read_number(bytes: &[u8]) -> Reading {
    let (negative, digits) = match bytes.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, bytes),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Reading::NotANumber;
    }
    // Too large for a u64: read as u64::MAX, which the argument's own bound (far below
    // it) then refuses, so the error gives the real bound.
    let value = digits
        .iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .unwrap_or(u64::MAX);
    let zero = digits.iter().all(|&d| d == b'0');
    match (negative, value) {
        (true, _) if zero => Reading::Odd(0),
        (true, _) => Reading::NotANumber,
        _ if digits.len() > 1 && digits[0] == b'0' => Reading::Odd(value),
        _ => Reading::Exact(value),
    }
}

/// The options a command accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flag {
    Cost,
    Peek,
    MaxWait,
    Approx,
}

impl Flag {
    /// The keyword, as the docs (and the errors) spell it.
    fn name(self) -> &'static str {
        match self {
            Flag::Cost => "COST",
            Flag::Peek => "PEEK",
            Flag::MaxWait => "MAXWAIT",
            Flag::Approx => "APPROX",
        }
    }

    fn keyword(self) -> &'static [u8] {
        self.name().as_bytes()
    }
}

/// `token` as an error may repeat it: each byte as `std::ascii::escape_default` writes it
/// (no CR or LF reaches a reply), cut after 40 bytes with `...`.
fn printable(token: &[u8]) -> String {
    let mut shown: String = token
        .iter()
        .take(40)
        .flat_map(|&byte| std::ascii::escape_default(byte))
        .map(char::from)
        .collect();
    if token.len() > 40 {
        shown.push_str("...");
    }
    shown
}

/// `ERR syntax error near '<token>'`, then `why` if any.
fn syntax_near(token: &[u8], why: &str) -> Failure {
    Failure::Syntax(format!("ERR syntax error near '{}'{why}", printable(token)))
}

/// The options of a call as the contract reads them.
struct Options {
    cost: u64,
    peek: bool,
    max_wait: u64,
    approx: bool,
}

impl Oracle {
    fn hard(&mut self, failure: Failure) {
        self.failures.push(failure);
        self.hard = true;
    }

    fn soft(&mut self, failure: Failure) {
        self.failures.push(failure);
    }

    /// An integer argument of at least `min` (0 or 1).
    fn number(&mut self, name: &'static str, raw: &[u8], min: u64) -> Option<u64> {
        match read_number(raw) {
            Reading::Exact(n) if n >= min => Some(n),
            Reading::Odd(n) if n >= min => {
                self.soft(Failure::Argument(name));
                Some(n)
            }
            _ => {
                self.hard(Failure::Argument(name));
                None
            }
        }
    }

    /// A number beyond its documented range: the only allowed reply is the error that
    /// gives the bound.
    fn at_most(&mut self, name: &'static str, value: Option<u64>, most: u64) {
        if value.is_some_and(|n| n > most) {
            self.hard(Failure::Bound(name, most));
        }
    }

    /// The documented ranges of the policy `algorithm` takes, its numbers in
    /// [`policy_fields`] order (`None` where a number did not read).
    fn ranges(&mut self, algorithm: Algorithm, numbers: &[Option<u64>]) {
        for (&(name, _, most), &n) in policy_fields(algorithm).iter().zip(numbers) {
            // A bucket's capacity is bounded with refill_ms, below.
            if algorithm != Algorithm::TokenBucket || name != "capacity" {
                self.at_most(name, n, most);
            }
        }
        if algorithm == Algorithm::TokenBucket
            && let Some(ms) = numbers[2].filter(|&ms| ms <= MAX_DURATION_MS)
        {
            self.at_most("capacity", numbers[0], bucket_capacity_most(ms));
        }
    }

    /// A throttle built by the core (its ranges are redis-cell's, checked by the core
    /// alone); its error names the argument.
    fn throttle(
        &mut self,
        built: Result<Throttle, redlimit_core::ArgumentError>,
    ) -> Option<Throttle> {
        built
            .map_err(|e| self.hard(Failure::Exact(format!("ERR {e}"))))
            .ok()
    }

    /// A policy whose ranges [`Oracle::at_most`] checked already, built by the core: where
    /// those checks found nothing, the core must accept it too.
    fn ranged<P>(&mut self, built: Result<P, redlimit_core::ArgumentError>) -> Option<P> {
        match built {
            Ok(policy) => Some(policy),
            Err(e) => {
                if !self
                    .failures
                    .iter()
                    .any(|f| matches!(f, Failure::Bound(..)))
                {
                    self.disagreement.get_or_insert(format!(
                        "the core refuses a policy within the documented ranges: {e}"
                    ));
                }
                self.hard = true;
                None
            }
        }
    }

    /// Options in any order, each at most once, keywords in any case.
    fn options(&mut self, rest: &[Vec<u8>], accepted: &[Flag]) -> Options {
        let mut options = Options {
            cost: 1,
            peek: false,
            max_wait: 0,
            approx: false,
        };
        let mut seen = Vec::new();
        let mut rest = rest.iter();
        while let Some(word) = rest.next() {
            let Some(flag) = accepted
                .iter()
                .copied()
                .find(|f| word.eq_ignore_ascii_case(f.keyword()))
            else {
                self.hard(syntax_near(word, ""));
                break;
            };
            if seen.contains(&flag) {
                self.hard(Failure::Syntax(format!(
                    "ERR syntax error: {} given twice",
                    flag.name()
                )));
                break;
            }
            seen.push(flag);
            let (name, value_name, slot) = match flag {
                Flag::Peek => {
                    options.peek = true;
                    continue;
                }
                Flag::Approx => {
                    options.approx = true;
                    continue;
                }
                Flag::Cost => ("COST", "n", &mut options.cost),
                Flag::MaxWait => ("MAXWAIT", "ms", &mut options.max_wait),
            };
            let Some(value) = rest.next() else {
                self.hard(Failure::Syntax(format!(
                    "ERR syntax error: {name} needs a value ({name} {value_name})"
                )));
                break;
            };
            match self.number(name, value, 0) {
                Some(n) => *slot = n,
                None => break,
            }
            // Counts are at most 2^62; the module refuses a larger COST as it reads it.
            if flag == Flag::Cost && options.cost > MAX_COUNT {
                self.hard(Failure::Bound("COST", MAX_COUNT));
                break;
            }
        }
        options
    }

    /// The key of a limiting command of `algorithm`.
    fn limiter_key(&mut self, keys: &Keyspace, key: &[u8], algorithm: Algorithm) {
        match state_of(keys, key) {
            KeyState::Other => self.hard(Failure::WrongType),
            KeyState::Limiter {
                algorithm: held,
                may_vanish,
            } if held != algorithm => {
                if may_vanish {
                    self.soft(Failure::WrongType);
                } else {
                    self.hard(Failure::WrongType);
                }
            }
            _ => {}
        }
    }

    fn finish(self, success: Option<Success>) -> Expect {
        Expect {
            success: if self.hard { None } else { success },
            failures: self.failures,
            disagreement: self.disagreement,
        }
    }
}

fn state_of(keys: &Keyspace, key: &[u8]) -> KeyState {
    *keys
        .get(key)
        .unwrap_or_else(|| panic!("key {} was not probed", show(key)))
}

fn arity() -> Expect {
    Expect {
        failures: vec![Failure::Arity],
        ..Expect::default()
    }
}

/// The replies the contract allows for `call` on `keys`.
fn expected(call: &Call, keys: &Keyspace) -> Expect {
    let args = &call.args;
    if call.command.server_rejects_arity(args.len()) {
        return arity();
    }
    match call.command {
        Command::TokenBucket => expect_tokenbucket(args, keys),
        Command::Throttle => expect_throttle(args, keys),
        Command::Sliding => expect_window(args, keys, true),
        Command::Fixed => expect_window(args, keys, false),
        Command::All => expect_all(args, keys),
        Command::Acquire => {
            let mut oracle = Oracle::default();
            let limit = oracle.number("limit", &args[1], 1);
            let lease_ms = oracle.number("lease_ms", &args[2], 1);
            oracle.ranges(Algorithm::Concurrency, &[limit, lease_ms]);
            let policy = match (limit, lease_ms) {
                (Some(limit), Some(ms)) => oracle.ranged(Concurrency::new(limit, ms)),
                _ => None,
            };
            if args[3].len() > MAX_LEASE_ID_LEN {
                oracle.hard(Failure::Argument("lease_id"));
            }
            oracle.limiter_key(keys, &args[0], Algorithm::Concurrency);
            let rule = policy.map(|p| Rule::simple(Algorithm::Concurrency, p.limit(), 1, false));
            oracle.finish(rule.map(Success::Decision))
        }
        Command::Release => {
            let mut oracle = Oracle::default();
            oracle.limiter_key(keys, &args[0], Algorithm::Concurrency);
            let held = matches!(state_of(keys, &args[0]), KeyState::Limiter { .. });
            oracle.finish(Some(Success::Released { held }))
        }
        Command::Reset => {
            let mut oracle = Oracle::default();
            let (mut min, mut max) = (0, 0);
            for key in args.iter().collect::<HashSet<_>>() {
                match state_of(keys, key) {
                    KeyState::Other => oracle.hard(Failure::WrongType),
                    KeyState::Limiter { may_vanish, .. } => {
                        max += 1;
                        min += i64::from(!may_vanish);
                    }
                    KeyState::Missing => {}
                }
            }
            oracle.finish(Some(Success::Count { min, max }))
        }
        Command::Status => {
            let mut oracle = Oracle::default();
            let state = state_of(keys, &args[0]);
            if state == KeyState::Other {
                oracle.hard(Failure::WrongType);
            }
            oracle.finish(Some(Success::Status(state)))
        }
        Command::SetState => {
            let mut oracle = Oracle::default();
            if state_of(keys, &args[0]) == KeyState::Other {
                oracle.hard(Failure::WrongType);
            }
            match Limiter::decode(&args[1]) {
                Ok(limiter) => {
                    // "A policy a command would reject" is not a state.
                    let numbers: Vec<u64> =
                        limiter.policy_fields().iter().map(|&(_, n)| n).collect();
                    if let Err(e) = check_policy_ranges(limiter.algorithm(), &numbers) {
                        oracle.hard(Failure::BadState);
                        oracle.disagreement.get_or_insert(format!(
                            "the core decodes a state whose policy is out of range: {e}"
                        ));
                    }
                    oracle.finish(Some(Success::Stored(limiter.algorithm())))
                }
                Err(_) => {
                    oracle.hard(Failure::BadState);
                    oracle.finish(None)
                }
            }
        }
    }
}

/// `never` for a token bucket: the cost exceeds a full bucket plus what MAXWAIT borrows.
fn bucket_never(policy: &TokenBucket, cost: u64, max_wait: u64) -> bool {
    let unit = u128::from(policy.refill_ms()) * 1_000;
    let borrow = (u128::from(max_wait) * 1_000)
        .saturating_mul(u128::from(policy.refill_tokens()))
        .min(1 << 62);
    u128::from(cost) * unit > u128::from(policy.capacity()) * unit + borrow
}

fn expect_tokenbucket(args: &[Vec<u8>], keys: &Keyspace) -> Expect {
    if args.len() > 9 {
        return arity();
    }
    let mut oracle = Oracle::default();
    let capacity = oracle.number("capacity", &args[1], 1);
    let refill_tokens = oracle.number("refill_tokens", &args[2], 1);
    let refill_ms = oracle.number("refill_ms", &args[3], 1);
    oracle.ranges(
        Algorithm::TokenBucket,
        &[capacity, refill_tokens, refill_ms],
    );
    let policy = match (capacity, refill_tokens, refill_ms) {
        (Some(c), Some(t), Some(ms)) => oracle.ranged(TokenBucket::new(c, t, ms)),
        _ => None,
    };
    let options = oracle.options(&args[4..], &[Flag::Cost, Flag::Peek, Flag::MaxWait]);
    if let Some(p) = &policy {
        let most = bucket_max_wait_most(p.refill_tokens());
        oracle.at_most("MAXWAIT", Some(options.max_wait), most);
        if p.check_max_wait(options.max_wait).is_err() && options.max_wait <= most {
            oracle.disagreement.get_or_insert(format!(
                "the core refuses MAXWAIT {} although the documented bound is {most}",
                options.max_wait
            ));
        }
    }
    oracle.limiter_key(keys, &args[0], Algorithm::TokenBucket);
    let rule = policy.map(|p| Rule {
        algorithm: Algorithm::TokenBucket,
        limit: p.capacity(),
        never: bucket_never(&p, options.cost, options.max_wait),
        max_wait: options.max_wait,
        writes: !options.peek && options.cost > 0,
        most_remaining: p.capacity(),
    });
    oracle.finish(rule.map(Success::Decision))
}

fn expect_throttle(args: &[Vec<u8>], keys: &Keyspace) -> Expect {
    if args.len() > 5 {
        return arity();
    }
    let mut oracle = Oracle::default();
    let max_burst = oracle.number("max_burst", &args[1], 0);
    let count = oracle.number("count_per_period", &args[2], 1);
    let period = oracle.number("period_s", &args[3], 1);
    let quantity = match args.get(4) {
        Some(raw) => oracle.number("quantity", raw, 0),
        None => Some(1),
    };
    // A quantity is a count: at most 2^62, refused as soon as it is read.
    oracle.at_most("quantity", quantity, MAX_COUNT);
    let quantity = quantity.filter(|&q| q <= MAX_COUNT);
    let policy = match (max_burst, count, period) {
        (Some(b), Some(c), Some(p)) => oracle.throttle(Throttle::new(b, c, p)),
        _ => None,
    };
    oracle.limiter_key(keys, &args[0], Algorithm::Throttle);
    let rule = policy.zip(quantity).map(|(p, quantity)| Rule {
        algorithm: Algorithm::Throttle,
        limit: p.limit(),
        never: u128::from(quantity) > u128::from(p.max_burst()) + 1,
        max_wait: 0,
        writes: quantity > 0,
        most_remaining: throttle_most_remaining(p.max_burst(), p.count(), p.period_s()),
    });
    oracle.finish(rule.map(Success::Decision))
}

/// `RL.SLIDING` (`sliding`) or `RL.FIXED`.
fn expect_window(args: &[Vec<u8>], keys: &Keyspace, sliding: bool) -> Expect {
    if args.len() > if sliding { 8 } else { 6 } {
        return arity();
    }
    let mut oracle = Oracle::default();
    let limit = oracle.number("limit", &args[1], 1);
    let window_ms = oracle.number("window_ms", &args[2], 1);
    let accepted: &[Flag] = if sliding {
        &[Flag::Cost, Flag::Peek, Flag::Approx]
    } else {
        &[Flag::Cost, Flag::Peek]
    };
    let options = oracle.options(&args[3..], accepted);
    let algorithm = match (sliding, options.approx) {
        (false, _) => Algorithm::Fixed,
        (true, false) => Algorithm::Sliding,
        (true, true) => Algorithm::SlidingApprox,
    };
    oracle.ranges(algorithm, &[limit, window_ms]);
    let policy = limit.zip(window_ms).and_then(|(l, ms)| match algorithm {
        Algorithm::Fixed => oracle.ranged(FixedWindow::new(l, ms)).map(|p| p.limit()),
        Algorithm::Sliding => oracle.ranged(SlidingWindow::new(l, ms)).map(|p| p.limit()),
        _ => oracle.ranged(SlidingCounter::new(l, ms)).map(|p| p.limit()),
    });
    oracle.limiter_key(keys, &args[0], algorithm);
    let rule = policy.map(|limit| Rule::simple(algorithm, limit, options.cost, options.peek));
    oracle.finish(rule.map(Success::Decision))
}

/// `RL.ALL numkeys key... policy... [COST n] [PEEK]`.
fn expect_all(args: &[Vec<u8>], keys: &Keyspace) -> Expect {
    let mut oracle = Oracle::default();
    let Some(numkeys) = oracle.number("numkeys", &args[0], 1) else {
        return oracle.finish(None);
    };
    if numkeys > MAX_ALL_KEYS {
        oracle.hard(Failure::Bound("numkeys", MAX_ALL_KEYS));
        return oracle.finish(None);
    }
    let rest = &args[1..];
    let Some(n) = usize::try_from(numkeys).ok().filter(|&n| n < rest.len()) else {
        // More keys than arguments: an arity error (a number the server cannot use).
        oracle.hard(Failure::Arity);
        return oracle.finish(None);
    };
    let (names, mut tail) = rest.split_at(n);
    let mut policies: Vec<(Algorithm, u64)> = Vec::new();
    for index in 0..n {
        // The arguments ran out, or the options began, where policy `index` belongs.
        let missing = Failure::Exact(format!(
            "ERR RL.ALL needs one policy per key: {n} keys but {index} policies"
        ));
        let Some((word, after)) = tail.split_first() else {
            oracle.hard(missing);
            return oracle.finish(None);
        };
        if index > 0 && (word.eq_ignore_ascii_case(b"COST") || word.eq_ignore_ascii_case(b"PEEK")) {
            oracle.hard(missing);
            return oracle.finish(None);
        }
        tail = after;
        let arguments: &[&'static str] = if word.eq_ignore_ascii_case(b"TOKENBUCKET") {
            &["capacity", "refill_tokens", "refill_ms"]
        } else if word.eq_ignore_ascii_case(b"FIXED") || word.eq_ignore_ascii_case(b"SLIDING") {
            &["limit", "window_ms"]
        } else {
            let why = format!(
                " (policy {} of {n} must be TOKENBUCKET, SLIDING or FIXED)",
                index + 1
            );
            oracle.hard(syntax_near(word, &why));
            return oracle.finish(None);
        };
        let mut numbers = Vec::new();
        for name in arguments {
            let Some((raw, after)) = tail.split_first() else {
                oracle.hard(Failure::Arity);
                return oracle.finish(None);
            };
            tail = after;
            match oracle.number(name, raw, 1) {
                Some(n) => numbers.push(n),
                None => return oracle.finish(None),
            }
        }
        let approx = word.eq_ignore_ascii_case(b"SLIDING")
            && tail
                .first()
                .is_some_and(|w| w.eq_ignore_ascii_case(b"APPROX"));
        let algorithm = if word.eq_ignore_ascii_case(b"TOKENBUCKET") {
            Algorithm::TokenBucket
        } else if word.eq_ignore_ascii_case(b"FIXED") {
            Algorithm::Fixed
        } else if approx {
            tail = &tail[1..];
            Algorithm::SlidingApprox
        } else {
            Algorithm::Sliding
        };
        let given: Vec<Option<u64>> = numbers.iter().copied().map(Some).collect();
        oracle.ranges(algorithm, &given);
        let limit = match algorithm {
            Algorithm::TokenBucket => oracle
                .ranged(TokenBucket::new(numbers[0], numbers[1], numbers[2]))
                .map(|p| p.capacity()),
            Algorithm::Fixed => oracle
                .ranged(FixedWindow::new(numbers[0], numbers[1]))
                .map(|p| p.limit()),
            Algorithm::SlidingApprox => oracle
                .ranged(SlidingCounter::new(numbers[0], numbers[1]))
                .map(|p| p.limit()),
            _ => oracle
                .ranged(SlidingWindow::new(numbers[0], numbers[1]))
                .map(|p| p.limit()),
        };
        let policy = limit.map(|limit| (algorithm, limit));
        match policy {
            Some(policy) => policies.push(policy),
            None => return oracle.finish(None),
        }
    }
    let options = oracle.options(tail, &[Flag::Cost, Flag::Peek]);
    let mut first_algorithm: HashMap<&[u8], Algorithm> = HashMap::new();
    for (key, &(algorithm, _)) in names.iter().zip(&policies) {
        oracle.limiter_key(keys, key, algorithm);
        // A key named twice with two algorithms is WRONGTYPE once the first one wrote.
        let first = *first_algorithm.entry(key).or_insert(algorithm);
        if first != algorithm {
            oracle.soft(Failure::WrongType);
        }
    }
    let rules = policies
        .iter()
        .map(|&(algorithm, limit)| Rule::simple(algorithm, limit, options.cost, options.peek))
        .collect();
    oracle.finish(Some(Success::All(rules)))
}

// ---------------------------------------------------------------------------------------
// Checking replies
// ---------------------------------------------------------------------------------------

/// How a reply is encoded where it is read.
#[derive(Clone, Copy, Debug)]
struct Encoding {
    /// Maps and booleans (RESP3, or a script that called `redis.setresp(3)`), else flat
    /// arrays and integers.
    maps: bool,
    /// Read through a script: errors carry a suffix, the server's arity text differs.
    script: bool,
}

impl Encoding {
    fn plain(maps: bool) -> Self {
        Encoding {
            maps,
            script: false,
        }
    }
}

/// `got == expected`; through a script (`lossy`), as Lua's doubles round them.
#[allow(clippy::cast_precision_loss)]
fn same_number(got: i64, expected: u64, lossy: bool) -> bool {
    u64::try_from(got) == Ok(expected) || lossy && got as f64 == expected as f64
}

/// `got <= most`; through a script (`lossy`), as Lua's doubles round them.
#[allow(clippy::cast_precision_loss)]
fn at_most(got: i64, most: u64, lossy: bool) -> bool {
    u64::try_from(got).is_ok_and(|n| n <= most) || lossy && got as f64 <= most as f64
}

/// A field saturated at `i64::MAX` (read through a script, Lua turns it into a double of
/// 2^63 and back into `i64::MIN`). Within the documented ranges every number a decision
/// computes is far below it: a saturated field means a range check went missing.
fn saturated(fields: &[i64], lossy: bool) -> bool {
    fields
        .iter()
        .any(|&n| n == i64::MAX || lossy && n == i64::MIN)
}

/// What a checked reply said, for the key model.
#[derive(Default)]
struct Observed {
    error: bool,
    allowed: Option<bool>,
    nil: bool,
    /// The allowed error the reply was.
    failure: Option<Failure>,
}

impl Observed {
    /// A short name of the outcome, for the statistics.
    fn outcome(&self) -> String {
        match (&self.failure, self.allowed) {
            (Some(Failure::Argument(name)), _) => format!("ERR {name}"),
            (Some(Failure::Bound(name, _)), _) => format!("ERR {name} at most"),
            // The token and the numbers vary: the kind of error is enough here.
            (Some(Failure::Syntax(text)), _) if text.contains(" near ") => {
                "ERR syntax error near".to_owned()
            }
            (Some(Failure::Syntax(text)), _) if text.ends_with(" given twice") => {
                "ERR syntax error: given twice".to_owned()
            }
            (Some(Failure::Syntax(_)), _) => "ERR syntax error: needs a value".to_owned(),
            (Some(Failure::Exact(text)), _) => {
                let kind = text.split(" must be ").next().unwrap_or(text);
                kind.split(": ").next().unwrap_or(kind).to_owned()
            }
            (Some(failure), _) => format!("{failure:?}"),
            (None, Some(true)) => "allowed".to_owned(),
            (None, Some(false)) => "denied".to_owned(),
            (None, None) if self.nil => "nil".to_owned(),
            (None, None) => "ok".to_owned(),
        }
    }
}

const DECISION_FIELDS: [&str; 5] = [
    "allowed",
    "limit",
    "remaining",
    "retry_after_ms",
    "reset_after_ms",
];

/// The text of an error reply.
fn error_text(value: &Value) -> Option<String> {
    match value {
        Value::ServerError(error) => Some(match error.details() {
            Some(details) => format!("{} {details}", error.code()),
            None => error.code().to_owned(),
        }),
        _ => None,
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

fn int_of(value: Option<&Value>, name: &str) -> Result<i64, String> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        other => Err(format!("{name} is not an integer: {other:?}")),
    }
}

/// `allowed` (or any flag) as the encoding writes it: a boolean in maps, else 0/1.
fn flag_of(value: Option<&Value>, maps: bool) -> Result<bool, String> {
    match (value, maps) {
        (Some(Value::Boolean(b)), true) => Ok(*b),
        (Some(Value::Int(n @ 0..=1)), false) => Ok(*n == 1),
        (other, _) => Err(format!(
            "expected {}, got {other:?}",
            if maps { "a boolean" } else { "0 or 1" }
        )),
    }
}

/// Field-value pairs of a map (RESP3) or of a flat array (RESP2); a repeated name is an
/// error (a map has no duplicate keys).
fn pairs(value: &Value, maps: bool) -> Result<HashMap<String, Value>, String> {
    let list: Vec<(Value, Value)> = match (value, maps) {
        (Value::Map(pairs), true) => pairs.clone(),
        (Value::Array(items), false) if items.len() % 2 == 0 => items
            .chunks(2)
            .map(|pair| (pair[0].clone(), pair[1].clone()))
            .collect(),
        _ => {
            let shape = if maps {
                "a map"
            } else {
                "a flat array of pairs"
            };
            return Err(format!("expected {shape}, got {value:?}"));
        }
    };
    let mut fields = HashMap::new();
    for (name, value) in list {
        let name = text_of(&name).ok_or_else(|| format!("field name {name:?}"))?;
        if fields.insert(name.clone(), value).is_some() {
            return Err(format!("field {name} appears twice"));
        }
    }
    Ok(fields)
}

/// The five contract fields of a decision, in order (`allowed` as 0/1): an array of five
/// integers, the same under RESP2 and RESP3 (a map would let positional client code read
/// the key `"allowed"` as a truthy value).
fn decision_fields(value: &Value) -> Result<[i64; 5], String> {
    match value {
        Value::Array(items) if items.len() == 5 => {
            let mut out = [0i64; 5];
            for (slot, (item, name)) in out.iter_mut().zip(items.iter().zip(DECISION_FIELDS)) {
                *slot = int_of(Some(item), name)?;
            }
            Ok(out)
        }
        other => Err(format!("expected an array of 5 integers, got {other:?}")),
    }
}

/// The decision fields of a map (status or decision).
fn decision_from(fields: &HashMap<String, Value>, maps: bool) -> Result<[i64; 5], String> {
    let allowed = match fields.get("allowed") {
        // RESP2 replies may hold any integer here; check_decision reports it.
        Some(Value::Int(n)) if !maps => *n,
        other => i64::from(flag_of(other, maps).map_err(|e| format!("allowed: {e}"))?),
    };
    let mut out = [allowed, 0, 0, 0, 0];
    for (slot, name) in out.iter_mut().zip(DECISION_FIELDS).skip(1) {
        *slot = int_of(fields.get(name), name)?;
    }
    Ok(out)
}

/// Checks a contract decision (`[allowed, limit, remaining, retry_ms, reset_ms]`) against
/// `rule` and returns `allowed`.
fn check_decision(fields: [i64; 5], rule: &Rule, lossy: bool) -> Result<bool, String> {
    let [allowed, limit, remaining, retry, reset] = fields;
    let fail = |what: &str| Err(format!("{what}: {fields:?}"));
    if saturated(&fields, lossy) {
        return fail("a field is saturated at i64::MAX");
    }
    if !(0..=1).contains(&allowed) {
        return fail("allowed is not 0/1");
    }
    if !same_number(limit, rule.limit, lossy) {
        return fail(&format!("limit is not {}", rule.limit));
    }
    if remaining < 0 || !at_most(remaining, rule.most_remaining, lossy) {
        return fail("remaining is not within 0..=limit");
    }
    if retry < -1 || reset < 0 {
        return fail("retry_after_ms < -1 or reset_after_ms < 0");
    }
    let allowed = allowed == 1;
    if allowed && rule.max_wait == 0 && retry != 0 {
        return fail("allowed without MAXWAIT but retry_after_ms is not 0");
    }
    if rule.never && (allowed || retry != -1) {
        return fail("a cost above what the policy can ever grant is not denied with -1");
    }
    if !allowed && !rule.never && retry < 1 {
        return fail("denied but retry_after_ms < 1 although the cost can succeed later");
    }
    // Once the limiter is fully available again, a request that can ever succeed does.
    if retry > reset {
        return fail("retry_after_ms is later than reset_after_ms");
    }
    Ok(allowed)
}

/// Checks redis-cell's reply `[limited, limit, remaining, retry_s, reset_s]`; returns allowed.
fn check_throttle(fields: [i64; 5], rule: &Rule, lossy: bool) -> Result<bool, String> {
    let [limited, limit, remaining, retry, reset] = fields;
    let fail = |what: &str| Err(format!("{what}: {fields:?}"));
    if saturated(&fields, lossy) {
        return fail("a field is saturated at i64::MAX");
    }
    if !(0..=1).contains(&limited) {
        return fail("limited is not 0/1");
    }
    if !same_number(limit, rule.limit, lossy) {
        return fail(&format!("limit is not {}", rule.limit));
    }
    if remaining < 0 || !at_most(remaining, rule.most_remaining, lossy) {
        return fail("remaining is not within 0..=limit");
    }
    if reset < 0 || retry < -1 {
        return fail("retry_after < -1 or reset_after < 0");
    }
    let allowed = limited == 0;
    if allowed && retry != -1 {
        return fail("allowed but retry_after is not -1");
    }
    if rule.never && (allowed || retry != -1) {
        return fail("a quantity above the limit is not limited with -1");
    }
    Ok(allowed)
}

/// Checks the reply of one limiting command under `rule`; returns allowed.
fn check_limit_reply(reply: &Value, rule: &Rule, encoding: Encoding) -> Result<bool, String> {
    let lossy = encoding.script;
    match rule.algorithm {
        Algorithm::Throttle => check_throttle(decision_fields(reply)?, rule, lossy),
        _ => check_decision(decision_fields(reply)?, rule, lossy),
    }
}

const ALGORITHMS: [Algorithm; 6] = [
    Algorithm::TokenBucket,
    Algorithm::Throttle,
    Algorithm::Fixed,
    Algorithm::Sliding,
    Algorithm::SlidingApprox,
    Algorithm::Concurrency,
];

/// The largest number a throttle's policy may hold: anything but a saturated `i64::MAX`
/// (redis-cell's own ranges, which the core checks, keep every field below it).
const THROTTLE_MOST: u64 = i64::MAX.unsigned_abs() - 1;

/// The policy fields of `algorithm` (its arguments, and RL.STATUS's fields), each with its
/// documented range. The first is the limit (a throttle's is `max_burst + 1`). A token
/// bucket's `capacity` is also bounded by `refill_ms` (see [`bucket_capacity_most`]).
fn policy_fields(algorithm: Algorithm) -> &'static [(&'static str, u64, u64)] {
    match algorithm {
        Algorithm::TokenBucket => &[
            ("capacity", 1, MAX_BUCKET_PRODUCT),
            ("refill_tokens", 1, MAX_COUNT),
            ("refill_ms", 1, MAX_DURATION_MS),
        ],
        Algorithm::Throttle => &[
            ("max_burst", 0, THROTTLE_MOST),
            ("count_per_period", 1, THROTTLE_MOST),
            ("period", 1, THROTTLE_MOST),
        ],
        Algorithm::Fixed => &[("limit", 1, MAX_COUNT), ("window_ms", 1, MAX_DURATION_MS)],
        Algorithm::Sliding => &[
            ("limit", 1, MAX_SLIDING_LIMIT),
            ("window_ms", 1, MAX_DURATION_MS),
        ],
        Algorithm::SlidingApprox => &[("limit", 1, MAX_APPROX), ("window_ms", 1, MAX_APPROX)],
        Algorithm::Concurrency => &[("limit", 1, MAX_LEASES), ("lease_ms", 1, MAX_DURATION_MS)],
    }
}

/// A token bucket's largest `capacity` for `refill_ms`: `capacity * refill_ms` is at most
/// 2^62 / 1000.
fn bucket_capacity_most(refill_ms: u64) -> u64 {
    MAX_BUCKET_PRODUCT / refill_ms.max(1)
}

/// A token bucket's largest `MAXWAIT` for `refill_tokens`: `MAXWAIT * refill_tokens` is at
/// most 2^62 / 1000.
fn bucket_max_wait_most(refill_tokens: u64) -> u64 {
    MAX_BUCKET_PRODUCT / refill_tokens.max(1)
}

/// Checks the numbers of a stored policy (in [`policy_fields`] order) against the
/// documented ranges.
fn check_policy_ranges(algorithm: Algorithm, numbers: &[u64]) -> Result<(), String> {
    for (&(name, min, most), &n) in policy_fields(algorithm).iter().zip(numbers) {
        if !(min..=most).contains(&n) {
            return Err(format!("{name} {n} is outside {min}..={most}"));
        }
    }
    if algorithm == Algorithm::TokenBucket && numbers[0] > bucket_capacity_most(numbers[2]) {
        return Err(format!(
            "capacity {} is above {} for refill_ms {}",
            numbers[0],
            bucket_capacity_most(numbers[2]),
            numbers[2]
        ));
    }
    Ok(())
}

/// The field names of an RL.STATUS reply for `algorithm`, in order: each once.
fn status_names(algorithm: Algorithm) -> Vec<&'static str> {
    let mut names = vec!["algorithm"];
    names.extend(policy_fields(algorithm).iter().map(|&(name, ..)| name));
    for name in DECISION_FIELDS {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Checks an `RL.STATUS` reply for a limiter and returns its algorithm.
fn check_status(
    value: &Value,
    encoding: Encoding,
    expected: Option<Algorithm>,
) -> Result<Algorithm, String> {
    let maps = encoding.maps;
    let fields = pairs(value, maps)?;
    let name = fields.get("algorithm").and_then(text_of);
    let Some(algorithm) = ALGORITHMS
        .into_iter()
        .find(|a| Some(a.name()) == name.as_deref())
    else {
        return Err(format!("algorithm is {name:?} in {value:?}"));
    };
    if expected.is_some_and(|e| e != algorithm) {
        return Err(format!("expected a {expected:?} limiter, got {value:?}"));
    }
    let expected_names = status_names(algorithm);
    if fields.len() != expected_names.len()
        || expected_names
            .iter()
            .any(|name| !fields.contains_key(*name))
    {
        return Err(format!(
            "expected exactly the fields {expected_names:?}, got {value:?}"
        ));
    }
    let mut numbers = Vec::new();
    for &(name, ..) in policy_fields(algorithm) {
        let n = int_of(fields.get(name), name)?;
        let n = u64::try_from(n).map_err(|_| format!("{name} is {n} in {value:?}"))?;
        numbers.push(n);
    }
    // Through a script Lua's doubles round large numbers, but never across a bound (each
    // is a double).
    check_policy_ranges(algorithm, &numbers)
        .map_err(|e| format!("RL.STATUS reports a policy out of range: {e} in {value:?}"))?;
    let limit = match algorithm {
        Algorithm::Throttle => numbers[0].saturating_add(1),
        _ => numbers[0],
    };
    let mut rule = Rule::simple(algorithm, limit, 1, true);
    if algorithm == Algorithm::Throttle {
        rule.most_remaining = throttle_most_remaining(numbers[0], numbers[1], numbers[2]);
    }
    check_decision(decision_from(&fields, maps)?, &rule, encoding.script)
        .map_err(|e| format!("status {value:?}: {e}"))?;
    Ok(algorithm)
}

/// Checks an `RL.ALL` reply: the overall `allowed` as the integer 1/0, then each key's
/// decision, under RESP2 and RESP3 alike; returns the overall `allowed`.
fn check_all(reply: &Value, rules: &[Rule], encoding: Encoding) -> Result<bool, String> {
    let Value::Array(items) = reply else {
        return Err(format!("expected an array, got {reply:?}"));
    };
    if items.len() != rules.len() + 1 {
        return Err(format!(
            "expected {} elements, got {reply:?}",
            rules.len() + 1
        ));
    }
    let allowed = flag_of(items.first(), false).map_err(|e| format!("allowed: {e}"))?;
    let mut all = true;
    for (item, rule) in items[1..].iter().zip(rules) {
        all &= check_decision(decision_fields(item)?, rule, encoding.script)?;
    }
    if allowed != all {
        return Err(format!(
            "allowed is {allowed} but the keys' decisions say {all}: {reply:?}"
        ));
    }
    Ok(allowed)
}

/// Checks `reply` to `call` against `expect`.
fn check(
    call: &Call,
    expect: &Expect,
    reply: &Value,
    encoding: Encoding,
) -> Result<Observed, String> {
    if let Some(disagreement) = &expect.disagreement {
        return Err(format!("{disagreement} (the module answered {reply:?})"));
    }
    if let Some(text) = error_text(reply) {
        if text.contains("internal error") {
            return Err(format!("a caught panic or failed server call: {text:?}"));
        }
        if !text.starts_with("ERR ") && !text.starts_with("WRONGTYPE ") {
            return Err(format!(
                "an error that is neither ERR nor WRONGTYPE: {text:?}"
            ));
        }
        if let Some(failure) = expect
            .failures
            .iter()
            .find(|f| f.matches(&text, call.command, encoding.script))
        {
            return Ok(Observed {
                error: true,
                failure: Some(failure.clone()),
                ..Observed::default()
            });
        }
        return Err(format!(
            "got the error {text:?}; allowed: {:?}{}",
            expect.failures,
            if expect.success.is_some() {
                " or a success"
            } else {
                ""
            }
        ));
    }
    let Some(success) = &expect.success else {
        return Err(format!(
            "got {reply:?}, expected one of the errors {:?}",
            expect.failures
        ));
    };
    let allowed = |allowed| {
        Ok(Observed {
            allowed: Some(allowed),
            ..Observed::default()
        })
    };
    match success {
        Success::Decision(rule) => allowed(check_limit_reply(reply, rule, encoding)?),
        Success::All(rules) => allowed(check_all(reply, rules, encoding)?),
        Success::Status(state) => {
            if *reply == Value::Nil {
                return match state {
                    KeyState::Missing
                    | KeyState::Limiter {
                        may_vanish: true, ..
                    } => Ok(Observed {
                        nil: true,
                        ..Observed::default()
                    }),
                    _ => Err(format!("nil for a key holding {state:?}")),
                };
            }
            let KeyState::Limiter { algorithm, .. } = state else {
                return Err(format!("{reply:?} for a key holding {state:?}"));
            };
            check_status(reply, encoding, Some(*algorithm))?;
            Ok(Observed::default())
        }
        Success::Count { min, max } => match reply {
            Value::Int(n) if (*min..=*max).contains(n) => Ok(Observed::default()),
            other => Err(format!(
                "expected a count within {min}..={max}, got {other:?}"
            )),
        },
        Success::Released { held } => match reply {
            Value::Int(0) => Ok(Observed::default()),
            Value::Int(1) if *held => Ok(Observed::default()),
            other => Err(format!("expected 0 or 1 (held: {held}), got {other:?}")),
        },
        Success::Stored(_) => match reply {
            Value::Okay => Ok(Observed::default()),
            Value::SimpleString(s) if s == "OK" => Ok(Observed::default()),
            other => Err(format!("expected OK, got {other:?}")),
        },
    }
}

/// Follows a checked reply in the key model.
fn apply(keys: &mut Keyspace, call: &Call, expect: &Expect, seen: &Observed) {
    if seen.error {
        return;
    }
    // A limiter that may have expired and did not answer WRONGTYPE had expired.
    let mut answered = |key: &Vec<u8>, algorithm: Algorithm| {
        if matches!(keys.get(key), Some(KeyState::Limiter { algorithm: held, .. }) if *held != algorithm)
        {
            keys.insert(key.clone(), KeyState::Missing);
        }
    };
    let written = |algorithm| KeyState::Limiter {
        algorithm,
        may_vanish: true,
    };
    match &expect.success {
        Some(Success::Decision(rule)) => {
            let key = &call.args[0];
            answered(key, rule.algorithm);
            if seen.allowed == Some(true) && rule.writes {
                keys.insert(key.clone(), written(rule.algorithm));
            }
        }
        Some(Success::All(rules)) => {
            let names = &call.args[1..=rules.len()];
            for (key, rule) in names.iter().zip(rules) {
                answered(key, rule.algorithm);
            }
            for (key, rule) in names.iter().zip(rules) {
                if seen.allowed == Some(true) && rule.writes {
                    keys.insert(key.clone(), written(rule.algorithm));
                }
            }
        }
        Some(Success::Released { .. }) => {
            // Releasing (or pruning) the last lease deletes the key.
            let key = &call.args[0];
            answered(key, Algorithm::Concurrency);
            if keys.get(key) != Some(&KeyState::Missing) {
                keys.insert(key.clone(), written(Algorithm::Concurrency));
            }
        }
        Some(Success::Status(_)) if seen.nil => {
            keys.insert(call.args[0].clone(), KeyState::Missing);
        }
        Some(Success::Count { .. }) => {
            for key in &call.args {
                keys.insert(key.clone(), KeyState::Missing);
            }
        }
        Some(Success::Stored(algorithm)) => {
            keys.insert(call.args[0].clone(), written(*algorithm));
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// The server under test
// ---------------------------------------------------------------------------------------

/// One server with a RESP2 and a RESP3 connection.
struct Target {
    server: Server,
    flavor: Flavor,
    resp2: redis::Connection,
    resp3: redis::Connection,
    /// A third connection, which WATCHes keys.
    watcher: redis::Connection,
    /// The clock offset last set successfully.
    offset: i64,
    /// Commands sent.
    sent: u64,
    /// DUMPs of the keys of other types, to show they never change.
    others: Vec<(Vec<u8>, Value)>,
    /// How many replies of each kind each command gave.
    outcomes: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

impl Target {
    fn start(binary: &ServerBinary) -> Self {
        let server = ServerBuilder::new(binary).module(module_path()).start();
        let resp2 = server.connection();
        let client =
            redis::Client::open(format!("{}?protocol=resp3", server.url())).expect("a RESP3 url");
        let timeout = Some(Duration::from_secs(10));
        let resp3 = client
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("a RESP3 connection");
        resp3.set_read_timeout(timeout).expect("a read timeout");
        resp3.set_write_timeout(timeout).expect("a write timeout");
        let watcher = server.connection();
        let mut target = Target {
            flavor: binary.flavor,
            server,
            resp2,
            resp3,
            watcher,
            offset: 0,
            sent: 0,
            others: Vec::new(),
            outcomes: BTreeMap::new(),
        };
        target
            .seed_other_types()
            .expect("seeding keys of other types");
        target
    }

    /// Whether the server freezes its clock for a whole MULTI/EXEC (Redis 7.2+, Valkey).
    fn freezes_time(&self) -> bool {
        self.flavor != Flavor::Redis70
    }

    fn send(&mut self, resp3: bool, cmd: &Cmd) -> Result<Value, String> {
        self.sent += 1;
        let con = if resp3 {
            &mut self.resp3
        } else {
            &mut self.resp2
        };
        con.req_command(cmd)
            .map_err(|e| format!("the connection failed (server crashed or hung?): {e}"))
    }

    fn query(&mut self, resp3: bool, parts: &[&[u8]]) -> Result<Value, String> {
        let mut cmd = Cmd::new();
        for part in parts {
            cmd.arg(*part);
        }
        self.send(resp3, &cmd)
    }

    fn tally(&mut self, call: &Call, seen: &Observed) {
        let counts = self.outcomes.entry(call.command.name()).or_default();
        *counts.entry(seen.outcome()).or_default() += 1;
    }

    /// What the calls answered, one line per command, most frequent first.
    fn outcomes(&self) -> String {
        let mut lines = String::new();
        for (command, counts) in &self.outcomes {
            let mut counts: Vec<_> = counts.iter().collect();
            counts.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let counts: Vec<String> = counts.iter().map(|(o, n)| format!("{o} {n}")).collect();
            lines.push_str(&format!("  {command}: {}\n", counts.join(", ")));
        }
        lines
    }

    /// A query on the watching connection, which must not fail.
    fn watch(&mut self, parts: &[&[u8]]) -> Result<Value, String> {
        self.sent += 1;
        let mut cmd = Cmd::new();
        for part in parts {
            cmd.arg(*part);
        }
        let reply = self
            .watcher
            .req_command(&cmd)
            .map_err(|e| format!("the connection failed (server crashed or hung?): {e}"))?;
        match error_text(&reply) {
            Some(text) => Err(format!("{} failed: {text}", show(parts[0]))),
            None => Ok(reply),
        }
    }

    /// A RESP2 query that must not fail.
    fn ok(&mut self, parts: &[&[u8]]) -> Result<Value, String> {
        let reply = self.query(false, parts)?;
        match error_text(&reply) {
            Some(text) => {
                let shown: Vec<String> = parts.iter().map(|p| show(p)).collect();
                Err(format!("{} failed: {text}", shown.join(" ")))
            }
            None => Ok(reply),
        }
    }

    fn seed_other_types(&mut self) -> Result<(), String> {
        self.ok(&[b"SET", b"fz:string", b"v"])?;
        self.ok(&[b"RPUSH", b"fz:list", b"a", b"b"])?;
        self.ok(&[b"HSET", b"fz:hash", b"f", b"v"])?;
        self.ok(&[b"SADD", b"fz:set", b"m"])?;
        self.ok(&[b"ZADD", b"fz:zset", b"1", b"m"])?;
        self.ok(&[b"XADD", b"fz:stream", b"*", b"f", b"v"])?;
        for (key, kind) in OTHER_KEYS {
            let seen = self.ok(&[b"TYPE", key.as_bytes()])?;
            if text_of(&seen).as_deref() != Some(kind) {
                return Err(format!("TYPE {key} answered {seen:?}"));
            }
            let dump = self.ok(&[b"DUMP", key.as_bytes()])?;
            self.others.push((bytes(key), dump));
        }
        Ok(())
    }

    /// The server's wall clock in microseconds.
    fn server_micros(&mut self) -> Result<u64, String> {
        let reply = self.ok(&[b"TIME"])?;
        let number = |v: &Value| text_of(v).and_then(|t| t.parse::<u64>().ok());
        match &reply {
            Value::Array(parts) if parts.len() == 2 => match (number(&parts[0]), number(&parts[1]))
            {
                (Some(s), Some(us)) => Ok(s * 1_000_000 + us),
                _ => Err(format!("TIME answered {reply:?}")),
            },
            _ => Err(format!("TIME answered {reply:?}")),
        }
    }

    /// Gives every seeded limiter key a state months from expiring (written by calls
    /// with the clock a year ahead) and clears the free keys.
    fn seed_limiters(&mut self) -> Result<(), String> {
        let saved = self.offset;
        self.move_clock(365 * 24 * 3_600 * 1_000)?;
        let long = b"100000000".as_slice();
        let seeds: [(&str, Vec<&[u8]>); 6] = [
            (
                "fz:tokenbucket",
                vec![b"RL.TOKENBUCKET", b"5", b"1", long, b"COST", b"5"],
            ),
            ("fz:throttle", vec![b"RL.THROTTLE", b"5", b"1", long, b"6"]),
            ("fz:fixed", vec![b"RL.FIXED", b"5", long]),
            ("fz:sliding", vec![b"RL.SLIDING", b"5", long]),
            ("fz:approx", vec![b"RL.SLIDING", b"5", long, b"APPROX"]),
            ("fz:leases", vec![b"RL.ACQUIRE", b"2", long, b"job-1"]),
        ];
        for (key, command) in seeds {
            self.ok(&[b"DEL", key.as_bytes()])?;
            let mut parts = vec![command[0], key.as_bytes()];
            parts.extend(&command[1..]);
            let reply = self.ok(&parts)?;
            if let Value::Array(items) = &reply
                && items.first() == Some(&Value::Int(i64::from(key != "fz:throttle")))
            {
                continue;
            }
            return Err(format!("seeding {key} answered {reply:?}"));
        }
        self.move_clock(saved)?;
        self.ok(&[b"DEL", FREE_KEYS[0].as_bytes(), FREE_KEYS[1].as_bytes()])?;
        Ok(())
    }

    /// What `key` holds now. A limiter key expires at its idle moment on the test clock,
    /// so under an offset it idles `offset` ms before the server removes it; past that
    /// moment it is exactly an absent key (RL.STATUS answers nil).
    fn probe(&mut self, key: &[u8]) -> Result<KeyState, String> {
        let kind = self.ok(&[b"TYPE", key])?;
        match text_of(&kind).as_deref() {
            Some("none") => Ok(KeyState::Missing),
            Some("redlimit0") => {
                let ttl = int_of(Some(&self.ok(&[b"PTTL", key])?), "PTTL")?;
                let status = self.query(false, &[b"RL.STATUS", key])?;
                // Milliseconds of the test clock left before the key idles.
                let live_ms = ttl.saturating_sub(self.offset);
                if status == Value::Nil {
                    if ttl >= 0 && live_ms >= STABLE_TTL_MS {
                        return Err(format!(
                            "RL.STATUS {} answered nil for a key that idles only in {live_ms} ms",
                            show(key)
                        ));
                    }
                    return Ok(KeyState::Missing);
                }
                let algorithm = check_status(&status, Encoding::plain(false), None)
                    .map_err(|e| format!("RL.STATUS {}: {e}", show(key)))?;
                Ok(KeyState::Limiter {
                    algorithm,
                    may_vanish: ttl == -2 || ttl >= 0 && live_ms < STABLE_TTL_MS,
                })
            }
            Some(_) => Ok(KeyState::Other),
            None => Err(format!("TYPE answered {kind:?}")),
        }
    }

    /// Follows a move of the test clock from `from` in the key model: moved forward, a
    /// limiter may now idle within the batch; moved back, a key that was idle (still
    /// stored, answering as absent) may be live again.
    fn clock_moved(&mut self, keys: &mut Keyspace, from: i64) -> Result<(), String> {
        if self.offset == from {
            return Ok(());
        }
        let names: Vec<Vec<u8>> = keys.keys().cloned().collect();
        for key in names {
            match keys[&key] {
                KeyState::Limiter {
                    algorithm,
                    may_vanish: false,
                } if self.offset > from => {
                    let ttl = int_of(Some(&self.ok(&[b"PTTL", &key])?), "PTTL")?;
                    let live_ms = ttl.saturating_sub(self.offset);
                    if ttl == -2 || ttl >= 0 && live_ms < STABLE_TTL_MS {
                        let may_vanish = true;
                        keys.insert(
                            key,
                            KeyState::Limiter {
                                algorithm,
                                may_vanish,
                            },
                        );
                    }
                }
                KeyState::Missing if self.offset < from => {
                    let state = self.probe(&key)?;
                    keys.insert(key, state);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Seeds the pool and probes every key `calls` may touch.
    fn prepare<'a>(&mut self, calls: impl Iterator<Item = &'a Call>) -> Result<Keyspace, String> {
        self.seed_limiters()?;
        let mut keys = Keyspace::new();
        for call in calls {
            for key in call.keys() {
                if !keys.contains_key(key) {
                    let state = self.probe(key)?;
                    keys.insert(key.clone(), state);
                }
            }
        }
        Ok(keys)
    }

    /// The server is alive on both connections, the other types are untouched, and the
    /// random keys of the batch are gone.
    fn finish(&mut self, keys: &Keyspace) -> Result<(), String> {
        for resp3 in [false, true] {
            let pong = self.query(resp3, &[b"PING"])?;
            if text_of(&pong).as_deref() != Some("PONG") {
                return Err(format!("PING answered {pong:?}"));
            }
        }
        for (key, dump) in self.others.clone() {
            if self.ok(&[b"DUMP", &key])? != dump {
                return Err(format!(
                    "{} changed: an RL.* command touched it",
                    show(&key)
                ));
            }
        }
        for key in keys.keys().filter(|k| !is_pool_key(k)) {
            self.ok(&[b"DEL", key])?;
        }
        Ok(())
    }

    /// `CONFIG SET redlimit.clock-offset-ms <raw>`: valid values apply, invalid ones are
    /// errors that change nothing.
    fn set_offset(&mut self, raw: &[u8]) -> Result<(), String> {
        let reply = self.query(
            false,
            &[b"CONFIG", b"SET", b"redlimit.clock-offset-ms", raw],
        )?;
        let canonical = std::str::from_utf8(raw)
            .ok()
            .and_then(|s| s.parse::<i64>().ok().filter(|n| n.to_string() == s));
        let in_range = canonical.is_some_and(|n| (0..=MAX_OFFSET_MS).contains(&n));
        let got = self.ok(&[b"CONFIG", b"GET", b"redlimit.clock-offset-ms"])?;
        let got = match &got {
            Value::Array(items) if items.len() == 2 => text_of(&items[1]),
            _ => None,
        }
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| format!("CONFIG GET answered {got:?}"))?;
        let what = format!("CONFIG SET redlimit.clock-offset-ms {}", show(raw));
        match error_text(&reply) {
            Some(text) if in_range => Err(format!("{what} refused a valid offset: {text}")),
            Some(text) if !text.starts_with("ERR ") => Err(format!("{what}: {text}")),
            Some(_) if got != self.offset => Err(format!(
                "{what} failed but the offset moved from {} to {got}",
                self.offset
            )),
            Some(_) => Ok(()),
            None if canonical.is_some() && !in_range => {
                Err(format!("{what} accepted an out-of-range offset"))
            }
            None if !(0..=MAX_OFFSET_MS).contains(&got) => {
                Err(format!("{what} left the offset at {got}"))
            }
            None if canonical.is_some_and(|n| n != got) => {
                Err(format!("{what} answered OK but the offset is {got}"))
            }
            None => {
                self.offset = got;
                Ok(())
            }
        }
    }

    /// Moves the test clock to `offset` (a valid one).
    fn move_clock(&mut self, offset: i64) -> Result<(), String> {
        self.set_offset(&decimal(offset))?;
        if self.offset != offset {
            return Err(format!("the clock offset is {}, not {offset}", self.offset));
        }
        Ok(())
    }

    fn check_log(&self) {
        let log = self.server.log();
        let lower = log.to_lowercase();
        for marker in ["panic", "internal error", "keeps running"] {
            assert!(
                !lower.contains(marker),
                "{}: the server log mentions {marker:?}:\n{log}",
                self.flavor.name()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------

impl Target {
    /// Random calls one by one over RESP2 or RESP3, with clock moves and COMMAND GETKEYS in
    /// between.
    fn plain_batch(&mut self, steps: &[Step]) -> Result<(), String> {
        let calls = steps.iter().filter_map(|step| match step {
            Step::Call { call, .. } => Some(call),
            _ => None,
        });
        let mut keys = self.prepare(calls)?;
        for (i, step) in steps.iter().enumerate() {
            match step {
                Step::Call { call, resp3 } => {
                    let expect = expected(call, &keys);
                    let reply = self.send(*resp3, &call.cmd())?;
                    let encoding = Encoding {
                        maps: *resp3,
                        script: false,
                    };
                    let seen = check(call, &expect, &reply, encoding).map_err(|e| {
                        let protocol = if *resp3 { "RESP3" } else { "RESP2" };
                        format!("step {i}, {call:?} over {protocol}: {e}")
                    })?;
                    self.tally(call, &seen);
                    apply(&mut keys, call, &expect, &seen);
                }
                Step::ClockOffset(raw) => {
                    let from = self.offset;
                    self.set_offset(raw)
                        .and_then(|()| self.clock_moved(&mut keys, from))
                        .map_err(|e| format!("step {i}: {e}"))?;
                }
                Step::GetKeys(call) => self
                    .get_keys(call)
                    .map_err(|e| format!("step {i}, COMMAND GETKEYS {call:?}: {e}"))?,
            }
        }
        self.finish(&keys)
    }

    /// `COMMAND GETKEYS <call>`: the keys are arguments of the call, or an ERR.
    fn get_keys(&mut self, call: &Call) -> Result<(), String> {
        let mut cmd = Cmd::new();
        cmd.arg("COMMAND").arg("GETKEYS").arg(&call.name[..]);
        for arg in &call.args {
            cmd.arg(&arg[..]);
        }
        match self.send(false, &cmd)? {
            Value::Array(keys) => {
                for key in &keys {
                    let Value::BulkString(key) = key else {
                        return Err(format!("a key that is not a string: {key:?}"));
                    };
                    if !call.args.contains(key) {
                        return Err(format!("{} is not an argument", show(key)));
                    }
                }
                Ok(())
            }
            reply => match error_text(&reply) {
                Some(text) if text.starts_with("ERR ") => Ok(()),
                _ => Err(format!("answered {reply:?}")),
            },
        }
    }

    /// Random calls inside one MULTI/EXEC.
    fn transaction_batch(&mut self, calls: &[Call], resp3: bool) -> Result<(), String> {
        let mut keys = self.prepare(calls.iter())?;
        let reply = self.query(resp3, &[b"MULTI"])?;
        if reply != Value::Okay {
            return Err(format!("MULTI answered {reply:?}"));
        }
        let mut aborted = false;
        for (i, call) in calls.iter().enumerate() {
            let reply = self.send(resp3, &call.cmd())?;
            if call.command.server_rejects_arity(call.args.len()) {
                aborted = true;
                let text = error_text(&reply).unwrap_or_default();
                if !Failure::Arity.matches(&text, call.command, false) {
                    return Err(format!(
                        "queuing {i}, {call:?}: expected the arity error, got {reply:?}"
                    ));
                }
            } else if text_of(&reply).as_deref() != Some("QUEUED") {
                return Err(format!(
                    "queuing {i}, {call:?}: expected QUEUED, got {reply:?}"
                ));
            }
        }
        let exec = self.query(resp3, &[b"EXEC"])?;
        if aborted {
            return match error_text(&exec) {
                Some(text) if text.starts_with("EXECABORT ") => self.finish(&keys),
                _ => Err(format!("EXEC after a refused command answered {exec:?}")),
            };
        }
        let Value::Array(replies) = exec else {
            return Err(format!("EXEC answered {exec:?}"));
        };
        if replies.len() != calls.len() {
            return Err(format!(
                "EXEC answered {} replies to {} calls",
                replies.len(),
                calls.len()
            ));
        }
        let encoding = Encoding {
            maps: resp3,
            script: false,
        };
        for (i, (call, reply)) in calls.iter().zip(&replies).enumerate() {
            let expect = expected(call, &keys);
            let seen = check(call, &expect, reply, encoding)
                .map_err(|e| format!("EXEC reply {i}, {call:?} (RESP3: {resp3}): {e}"))?;
            self.tally(call, &seen);
            apply(&mut keys, call, &expect, &seen);
        }
        self.finish(&keys)
    }

    /// Random calls, each through `EVAL "return redis.pcall(unpack(ARGV))"`, the script
    /// speaking RESP2 or (`redis.setresp(3)`) RESP3.
    fn script_batch(&mut self, calls: &[Call], resp3: bool, setresp3: bool) -> Result<(), String> {
        let mut keys = self.prepare(calls.iter())?;
        let body: &[u8] = if setresp3 {
            b"redis.setresp(3); return redis.pcall(unpack(ARGV))"
        } else {
            b"return redis.pcall(unpack(ARGV))"
        };
        // A script's RESP3 maps reach a RESP2 client as flat arrays and its booleans
        // differently: only read maps where both sides speak RESP3.
        let encoding = Encoding {
            maps: resp3 && setresp3,
            script: true,
        };
        for (i, call) in calls.iter().enumerate() {
            let mut cmd = Cmd::new();
            cmd.arg("EVAL").arg(body).arg(0).arg(&call.name[..]);
            for arg in &call.args {
                cmd.arg(&arg[..]);
            }
            let reply = self.send(resp3, &cmd)?;
            let expect = expected(call, &keys);
            let seen = check(call, &expect, &reply, encoding).map_err(|e| {
                format!(
                    "script call {i}, {call:?} (RESP3 client: {resp3}, setresp(3): {setresp3}): {e}"
                )
            })?;
            self.tally(call, &seen);
            apply(&mut keys, call, &expect, &seen);
        }
        self.finish(&keys)
    }
}

// ---------------------------------------------------------------------------------------
// Stored states
// ---------------------------------------------------------------------------------------

/// One `states` case.
#[derive(Clone, Debug)]
struct StateCase {
    /// A valid encoding (maybe mutated), or one written by hand at the bounds.
    state: Vec<u8>,
    key: &'static str,
    resp3: bool,
    /// A valid call of each command, made on the stored state.
    follow_ups: Vec<Call>,
}

fn state_cases() -> BoxedStrategy<StateCase> {
    let n = || (1u64..=1_000).prop_map(decimal);
    let follow_ups =
        (n(), n(), n(), n(), n(), select(LEASE_IDS.to_vec())).prop_map(|(a, b, c, d, e, id)| {
            let call = |command, args: &[&Vec<u8>]| {
                Call::new(command, args.iter().map(|&arg| arg.clone()).collect())
            };
            let key = Vec::new(); // replaced by the case's key
            let (cost, approx, fixed, one, id) = (
                bytes("COST"),
                bytes("APPROX"),
                bytes("FIXED"),
                decimal(1),
                bytes(id),
            );
            vec![
                call(Command::TokenBucket, &[&key, &a, &b, &c, &cost, &d]),
                call(Command::Throttle, &[&key, &a, &b, &c, &d]),
                call(Command::Fixed, &[&key, &a, &b, &cost, &e]),
                call(Command::Sliding, &[&key, &a, &b]),
                call(Command::Sliding, &[&key, &a, &b, &approx]),
                call(Command::Acquire, &[&key, &a, &b, &id]),
                call(Command::Release, &[&key, &id]),
                call(Command::All, &[&one, &key, &fixed, &a, &e]),
            ]
        });
    let state = prop_oneof![
        5 => (limiter(), mutation()).prop_map(|(limiter, m)| m.apply(limiter.encode())),
        1 => bounded_state(),
    ];
    (state, select(pool()), any::<bool>(), follow_ups)
        .prop_map(|(state, key, resp3, follow_ups)| StateCase {
            state,
            key,
            resp3,
            follow_ups,
        })
        .boxed()
}

impl Target {
    /// Stores a (maybe mutated) state: accepted exactly when it decodes; then RL.STATUS
    /// reports its policy, DUMP/RESTORE copies it, and every command answers on it.
    fn state_case(&mut self, case: &StateCase) -> Result<(), String> {
        let state = case.state.clone();
        let key = bytes(case.key);
        let call = Call::new(Command::SetState, vec![key.clone(), state.clone()]);
        let mut keys = self.prepare(std::iter::once(&call))?;
        let encoding = Encoding {
            maps: case.resp3,
            script: false,
        };
        let expect = expected(&call, &keys);
        let reply = self.send(case.resp3, &call.cmd())?;
        let seen = check(&call, &expect, &reply, encoding).map_err(|e| format!("{call:?}: {e}"))?;
        self.tally(&call, &seen);
        apply(&mut keys, &call, &expect, &seen);
        let decoded = Limiter::decode(&state);
        if let (false, Ok(decoded)) = (seen.error, &decoded) {
            self.stored_state(&key, decoded, case.resp3)
                .map_err(|e| format!("after {call:?}: {e}"))?;
        }
        for follow_up in &case.follow_ups {
            let mut call = follow_up.clone();
            match call.command {
                Command::All => call.args[1].clone_from(&key),
                _ => call.args[0].clone_from(&key),
            }
            keys.insert(key.clone(), self.probe(&key)?);
            let expect = expected(&call, &keys);
            let reply = self.send(case.resp3, &call.cmd())?;
            let seen = check(&call, &expect, &reply, encoding)
                .map_err(|e| format!("{call:?} on the state {}: {e}", show(&state)))?;
            apply(&mut keys, &call, &expect, &seen);
        }
        self.finish(&keys)
    }

    /// RL.STATUS reports the stored policy; DUMP/RESTORE gives the same value.
    fn stored_state(&mut self, key: &[u8], stored: &Limiter, resp3: bool) -> Result<(), String> {
        let status = self.query(resp3, &[b"RL.STATUS", key])?;
        if status != Value::Nil {
            check_status(&status, Encoding::plain(resp3), Some(stored.algorithm()))?;
            let fields = pairs(&status, resp3)?;
            for (name, value) in stored.policy_fields() {
                let got = int_of(fields.get(name), name)?;
                if u64::try_from(got) != Ok(value) {
                    return Err(format!(
                        "RL.STATUS: {name} is {got}, the state says {value}"
                    ));
                }
            }
        }
        let dump = self.ok(&[b"DUMP", key])?;
        let Value::BulkString(payload) = &dump else {
            return match dump {
                Value::Nil => Ok(()),
                other => Err(format!("DUMP answered {other:?}")),
            };
        };
        // The same absolute expiry: DEBUG DIGEST-VALUE covers it.
        let expire_at = int_of(Some(&self.ok(&[b"PEXPIRETIME", key])?), "PEXPIRETIME")?.max(0);
        self.ok(&[
            b"RESTORE",
            b"fz:copy",
            &decimal(expire_at),
            payload,
            b"REPLACE",
            b"ABSTTL",
        ])?;
        let copy = self.ok(&[b"DUMP", b"fz:copy"])?;
        let digests = [
            self.ok(&[b"DEBUG", b"DIGEST-VALUE", key])?,
            self.ok(&[b"DEBUG", b"DIGEST-VALUE", b"fz:copy"])?,
        ];
        let copied = self.ok(&[b"COPY", key, b"fz:copy", b"REPLACE"])?;
        let copied_dump = self.ok(&[b"DUMP", b"fz:copy"])?;
        let usage = self.ok(&[b"MEMORY", b"USAGE", key])?;
        self.ok(&[b"DEL", b"fz:copy"])?;
        if copy != dump {
            return Err("RESTORE gave another value".to_owned());
        }
        if digests[0] != digests[1] {
            return Err(format!(
                "DEBUG DIGEST-VALUE differs after RESTORE: {digests:?}"
            ));
        }
        // The key may have expired just before COPY.
        if copied == Value::Int(1) && copied_dump != dump {
            return Err("COPY gave another value".to_owned());
        }
        match usage {
            Value::Int(n) if n > 0 => Ok(()),
            Value::Nil => Ok(()),
            other => Err(format!("MEMORY USAGE answered {other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Invariants under valid traffic
// ---------------------------------------------------------------------------------------

/// The limiting commands, as families of keys with their own policies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Bucket,
    Throttle,
    Fixed,
    Sliding,
    Approx,
    Leases,
}

const FAMILIES: [Family; 6] = [
    Family::Bucket,
    Family::Throttle,
    Family::Fixed,
    Family::Sliding,
    Family::Approx,
    Family::Leases,
];

impl Family {
    fn key(self, index: usize) -> String {
        format!("inv:{self:?}:{index}")
    }

    /// Small policies, so that calls get denied; throttle intervals are whole microseconds.
    fn policy(self) -> BoxedStrategy<[u64; 3]> {
        match self {
            Family::Bucket => (1u64..=6, 1u64..=3, 1u64..=5_000)
                .prop_map(|(c, r, ms)| [c, r, ms])
                .boxed(),
            Family::Throttle => (0u64..=4, select(vec![1u64, 2, 4, 5, 8, 10]), 1u64..=30)
                .prop_map(|(b, c, p)| [b, c, p])
                .boxed(),
            Family::Leases => (1u64..=3, 1u64..=5_000)
                .prop_map(|(l, ms)| [l, ms, 0])
                .boxed(),
            _ => (1u64..=6, 1u64..=5_000)
                .prop_map(|(l, ms)| [l, ms, 0])
                .boxed(),
        }
    }

    /// The command for a request of `cost` (a quantity for throttles, ignored by leases).
    fn args(self, key: &str, p: [u64; 3], op: &LimitOp) -> Vec<Vec<u8>> {
        let mut args = match self {
            Family::Bucket => vec![
                bytes("RL.TOKENBUCKET"),
                bytes(key),
                decimal(p[0]),
                decimal(p[1]),
                decimal(p[2]),
            ],
            Family::Throttle => {
                let quantity = decimal(op.cost);
                return vec![
                    bytes("RL.THROTTLE"),
                    bytes(key),
                    decimal(p[0]),
                    decimal(p[1]),
                    decimal(p[2]),
                    quantity,
                ];
            }
            Family::Leases => {
                let id = bytes(LEASE_IDS[op.lease % LEASE_IDS.len()]);
                return vec![
                    bytes("RL.ACQUIRE"),
                    bytes(key),
                    decimal(p[0]),
                    decimal(p[1]),
                    id,
                ];
            }
            Family::Fixed => vec![bytes("RL.FIXED"), bytes(key), decimal(p[0]), decimal(p[1])],
            Family::Sliding | Family::Approx => {
                vec![
                    bytes("RL.SLIDING"),
                    bytes(key),
                    decimal(p[0]),
                    decimal(p[1]),
                ]
            }
        };
        args.extend([bytes("COST"), decimal(op.cost)]);
        if op.peek {
            args.push(bytes("PEEK"));
        }
        if self == Family::Approx {
            args.push(bytes("APPROX"));
        }
        if let (Family::Bucket, Some(ms)) = (self, op.max_wait) {
            args.extend([bytes("MAXWAIT"), decimal(ms)]);
        }
        args
    }

    fn rule(self, p: [u64; 3], op: &LimitOp) -> Rule {
        match self {
            Family::Bucket => {
                let policy = TokenBucket::new(p[0], p[1], p[2]).expect("a valid bucket");
                let max_wait = op.max_wait.unwrap_or(0);
                Rule {
                    algorithm: Algorithm::TokenBucket,
                    limit: p[0],
                    never: bucket_never(&policy, op.cost, max_wait),
                    max_wait,
                    writes: !op.peek && op.cost > 0,
                    most_remaining: p[0],
                }
            }
            Family::Throttle => Rule {
                algorithm: Algorithm::Throttle,
                limit: p[0] + 1,
                never: op.cost > p[0] + 1,
                max_wait: 0,
                writes: op.cost > 0,
                most_remaining: p[0] + 1,
            },
            Family::Leases => Rule::simple(Algorithm::Concurrency, p[0], 1, false),
            Family::Fixed => Rule::simple(Algorithm::Fixed, p[0], op.cost, op.peek),
            Family::Sliding => Rule::simple(Algorithm::Sliding, p[0], op.cost, op.peek),
            Family::Approx => Rule::simple(Algorithm::SlidingApprox, p[0], op.cost, op.peek),
        }
    }

    /// Whether the command takes PEEK.
    fn peeks(self) -> bool {
        !matches!(self, Family::Throttle | Family::Leases)
    }
}

/// One valid limiting call.
#[derive(Clone, Debug)]
struct LimitOp {
    family: Family,
    key: usize,
    policy: usize,
    cost: u64,
    peek: bool,
    max_wait: Option<u64>,
    lease: usize,
    resp3: bool,
}

/// One step of valid traffic.
#[derive(Clone, Debug)]
enum Op {
    Limit(LimitOp),
    Forward(u64),
    Back(u64),
}

/// Valid traffic on two keys of each family, each family with two policies.
#[derive(Clone, Debug)]
struct Scenario {
    /// Per family (in `FAMILIES` order), two policies.
    policies: Vec<Vec<[u64; 3]>>,
    ops: Vec<Op>,
}

fn scenarios() -> BoxedStrategy<Scenario> {
    let limit = (
        select(FAMILIES.to_vec()),
        0..2usize,
        0..2usize,
        0u64..=7,
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.2, 0u64..=5_000),
        0..LEASE_IDS.len(),
        any::<bool>(),
    )
        .prop_map(
            |(family, key, policy, cost, peek, max_wait, lease, resp3)| {
                Op::Limit(LimitOp {
                    family,
                    key,
                    policy,
                    cost,
                    peek: peek && family.peeks(),
                    max_wait,
                    lease,
                    resp3,
                })
            },
        );
    let op = prop_oneof![
        10 => limit,
        1 => prop_oneof![1u64..=2_000, 2_000u64..=100_000_000].prop_map(Op::Forward),
        1 => (10_000u64..=100_000_000).prop_map(Op::Back),
    ];
    let policies: Vec<_> = FAMILIES.iter().map(|f| vec(f.policy(), 2)).collect();
    (policies, vec(op, 1..=40))
        .prop_map(|(policies, ops)| Scenario { policies, ops })
        .boxed()
}

/// A key's value and absolute expiry, to show a call changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    dump: Value,
    expire_at_ms: i64,
}

/// What one valid call answered.
struct Seen {
    allowed: bool,
    /// It was allowed and counted (changed the state).
    wrote: bool,
    /// Its decision fields (redis-cell's for throttles).
    fields: [i64; 5],
}

/// The last state-changing decision on a key: the offset it ran at and what remained.
#[derive(Clone, Copy, Debug)]
struct LastWrite {
    offset: i64,
    remaining: i64,
}

impl Target {
    fn snapshot(&mut self, key: &[u8]) -> Result<Snapshot, String> {
        let dump = self.ok(&[b"DUMP", key])?;
        let expire_at_ms = int_of(Some(&self.ok(&[b"PEXPIRETIME", key])?), "PEXPIRETIME")?;
        Ok(Snapshot { dump, expire_at_ms })
    }

    /// `RL.STATUS key` as its five decision fields, `None` when there is no key.
    fn status_decision(&mut self, key: &[u8]) -> Result<Option<[i64; 5]>, String> {
        let status = self.ok(&[b"RL.STATUS", key])?;
        if status == Value::Nil {
            return Ok(None);
        }
        check_status(&status, Encoding::plain(false), None)
            .map_err(|e| format!("RL.STATUS {}: {e}", show(key)))?;
        decision_from(&pairs(&status, false)?, false).map(Some)
    }

    fn scenario(&mut self, scenario: &Scenario) -> Result<(), String> {
        let keys: Vec<String> = FAMILIES.iter().flat_map(|f| [f.key(0), f.key(1)]).collect();
        for key in &keys {
            self.ok(&[b"DEL", key.as_bytes()])?;
        }
        let mut last_writes: HashMap<String, LastWrite> = HashMap::new();
        for (i, op) in scenario.ops.iter().enumerate() {
            let context = |e: String| format!("op {i}, {op:?}: {e}");
            match op {
                Op::Limit(limit) => {
                    let family = limit.family;
                    let index = FAMILIES.iter().position(|f| *f == family).unwrap_or(0);
                    let policy = scenario.policies[index][limit.policy];
                    let key = family.key(limit.key);
                    let args = family.args(&key, policy, limit);
                    let rule = family.rule(policy, limit);
                    let peekable = family.peeks() && !limit.peek;
                    let seen = self
                        .observe(&key, &args, &rule, peekable, limit.resp3)
                        .map_err(context)?;
                    if seen.wrote {
                        let write = LastWrite {
                            offset: self.offset,
                            remaining: seen.fields[2],
                        };
                        last_writes.insert(key.clone(), write);
                    }
                    // Also (above all) where the state is ahead of a clock moved back: the
                    // waits then include the wait for the clock.
                    let [_, _, _, retry, reset] = seen.fields;
                    if family.peeks() && !seen.allowed && retry > 0 {
                        let mut peek = LimitOp {
                            peek: true,
                            ..limit.clone()
                        };
                        peek.resp3 = false;
                        let args = family.args(&key, policy, &peek);
                        let denied_at = self.offset;
                        self.retry_after(&args, retry).map_err(context)?;
                        let fully = rule.limit.saturating_sub(limit.cost);
                        self.reset_after(&args, denied_at, reset, fully)
                            .map_err(context)?;
                    }
                }
                Op::Forward(ms) => {
                    let ms = i64::try_from(*ms).unwrap_or(MAX_OFFSET_MS);
                    self.move_clock((self.offset + ms).min(MAX_OFFSET_MS))
                        .map_err(context)?;
                }
                Op::Back(ms) => self.clock_back(&keys, *ms, &last_writes).map_err(context)?,
            }
        }
        Ok(())
    }

    /// Runs one valid limiting call and checks it changes nothing unless it was allowed
    /// and counted. Returns `remaining` when it changed the state.
    fn observe(
        &mut self,
        key: &str,
        args: &[Vec<u8>],
        rule: &Rule,
        peekable: bool,
        resp3: bool,
    ) -> Result<Seen, String> {
        let mut cmd = Cmd::new();
        for arg in args {
            cmd.arg(&arg[..]);
        }
        let shown = args.iter().map(|a| show(a)).collect::<Vec<_>>().join(" ");
        self.watch(&[b"WATCH", key.as_bytes()])?;
        let before = self.snapshot(key.as_bytes())?;
        // Where time is frozen for a transaction: STATUS, the call as a PEEK, the call,
        // STATUS, all at one instant.
        let peekable = peekable && self.freezes_time();
        let (reply, status_before, peeked, status_after) = if self.freezes_time() {
            self.query(resp3, &[b"MULTI"])?;
            self.query(resp3, &[b"RL.STATUS", key.as_bytes()])?;
            if peekable {
                let mut peek = cmd.clone();
                peek.arg("PEEK");
                self.send(resp3, &peek)?;
            }
            self.send(resp3, &cmd)?;
            self.query(resp3, &[b"RL.STATUS", key.as_bytes()])?;
            let exec = self.query(resp3, &[b"EXEC"])?;
            let Value::Array(mut replies) = exec else {
                return Err(format!("EXEC answered {exec:?}"));
            };
            let after = replies.pop();
            let reply = replies.pop().unwrap_or(Value::Nil);
            let peeked = if peekable { replies.pop() } else { None };
            (reply, replies.pop(), peeked, after)
        } else {
            (self.send(resp3, &cmd)?, None, None, None)
        };
        let after = self.snapshot(key.as_bytes())?;
        self.watch(&[b"MULTI"])?;
        self.watch(&[b"PING"])?;
        let watched = self.watch(&[b"EXEC"])?;
        let allowed = check_limit_reply(&reply, rule, Encoding::plain(resp3))
            .map_err(|e| format!("{shown}: {e}"))?;
        if let Some(peeked) = peeked
            && peeked != reply
        {
            return Err(format!(
                "{shown}: as a PEEK it answered {peeked:?}, then {reply:?}"
            ));
        }
        for status in [&status_before, &status_after].into_iter().flatten() {
            if *status != Value::Nil {
                check_status(status, Encoding::plain(resp3), Some(rule.algorithm))
                    .map_err(|e| format!("{shown}: {e}"))?;
            }
        }
        if allowed && rule.writes {
            if watched != Value::Nil {
                return Err(format!(
                    "{shown}: a counted call did not abort a WATCH on its key: EXEC answered {watched:?}"
                ));
            }
            return Ok(Seen {
                allowed,
                wrote: true,
                fields: decision_fields(&reply)?,
            });
        }
        let why = if allowed {
            "a read-only call"
        } else {
            "a denied call"
        };
        let now_ms = i64::try_from(self.server_micros()? / 1_000).unwrap_or(i64::MAX);
        let expired = after.dump == Value::Nil && (0..=now_ms).contains(&before.expire_at_ms);
        if watched == Value::Nil && !expired {
            return Err(format!("{shown}: {why} aborted a WATCH on its key"));
        }
        if status_before != status_after {
            return Err(format!(
                "{shown}: {why} changed RL.STATUS at one instant: {status_before:?} -> {status_after:?}"
            ));
        }
        if before != after && !expired {
            return Err(format!(
                "{shown}: {why} changed the key: {before:?} -> {after:?}"
            ));
        }
        Ok(Seen {
            allowed,
            wrote: false,
            fields: decision_fields(&reply)?,
        })
    }

    /// After a denial with `retry_after_ms`, moves the clock that far (plus the 1 ms the
    /// contract leaves open) and checks that the same request (`args`, a PEEK) is allowed.
    fn retry_after(&mut self, args: &[Vec<u8>], retry_ms: i64) -> Result<(), String> {
        let to = self.offset.saturating_add(retry_ms).saturating_add(1);
        if to > MAX_OFFSET_MS {
            return Ok(());
        }
        self.move_clock(to)?;
        let mut cmd = Cmd::new();
        for arg in args {
            cmd.arg(&arg[..]);
        }
        let reply = self.send(false, &cmd)?;
        let fields = decision_fields(&reply)?;
        if fields[0] != 1 {
            let shown = args.iter().map(|a| show(a)).collect::<Vec<_>>().join(" ");
            return Err(format!(
                "denied with retry_after_ms {retry_ms}, yet {shown} is still denied {} ms later: {fields:?}",
                retry_ms + 1
            ));
        }
        Ok(())
    }

    /// After a denial at `denied_at` with `reset_after_ms`, moves the clock that far past it
    /// (plus 1 ms) and checks that the same request (`args`, a PEEK) finds the limiter fully
    /// available: allowed, with `remaining` `fully`.
    fn reset_after(
        &mut self,
        args: &[Vec<u8>],
        denied_at: i64,
        reset_ms: i64,
        fully: u64,
    ) -> Result<(), String> {
        let to = denied_at.saturating_add(reset_ms).saturating_add(1);
        if to > MAX_OFFSET_MS || to < self.offset {
            return Ok(());
        }
        self.move_clock(to)?;
        let mut cmd = Cmd::new();
        for arg in args {
            cmd.arg(&arg[..]);
        }
        let reply = self.send(false, &cmd)?;
        let fields = decision_fields(&reply)?;
        if fields[0] != 1 || u64::try_from(fields[2]) != Ok(fully) {
            let shown = args.iter().map(|a| show(a)).collect::<Vec<_>>().join(" ");
            return Err(format!(
                "denied with reset_after_ms {reset_ms}, yet {} ms later {shown} finds the limiter \
                 not fully available (expected allowed with {fully} remaining): {fields:?}",
                reset_ms + 1
            ));
        }
        Ok(())
    }

    /// Moves the clock back by `ms` and checks that no limiter grants more than before the
    /// move, nor more than its last decision left when the clock is now before it.
    fn clock_back(
        &mut self,
        keys: &[String],
        ms: u64,
        last_writes: &HashMap<String, LastWrite>,
    ) -> Result<(), String> {
        let mut before = Vec::new();
        for key in keys {
            before.push(self.status_decision(key.as_bytes())?);
        }
        let from = self.offset;
        let to = from
            .saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))
            .max(0);
        self.move_clock(to)?;
        if from - to < MIN_BACKWARD_MS {
            return Ok(());
        }
        for (key, before) in keys.iter().zip(before) {
            let after = self.status_decision(key.as_bytes())?;
            let (Some(before), Some(after)) = (before, after) else {
                continue;
            };
            if after[0] > before[0] || after[2] > before[2] {
                return Err(format!(
                    "{key}: moving the clock back {from} -> {to} ms granted more: RL.STATUS {before:?} -> {after:?}"
                ));
            }
            if let Some(last) = last_writes.get(key)
                && to + MIN_BACKWARD_MS < last.offset
                && after[2] > last.remaining
            {
                return Err(format!(
                    "{key}: with the clock back before its last decision (offset {} -> {to}), \
                     RL.STATUS says {} remain where the decision left {}",
                    last.offset, after[2], last.remaining
                ));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The properties, per server
// ---------------------------------------------------------------------------------------

/// Runs `test` on `cases` generated values and prints how long it took.
fn property<S>(
    target: &mut Target,
    name: &str,
    cases: u32,
    salt: u64,
    strategy: S,
    test: impl Fn(&mut Target, S::Value) -> Result<(), String>,
) where
    S: Strategy,
    S::Value: fmt::Debug,
{
    let started = Instant::now();
    let sent = target.sent;
    let flavor = target.flavor.name();
    let cell = RefCell::new(target);
    let result = runner(cases, salt).run(&strategy, |value| {
        let mut target = cell.borrow_mut();
        test(&mut target, value).map_err(TestCaseError::fail)
    });
    let target = cell.into_inner();
    if let Err(error) = result {
        panic!("{flavor}: property {name} failed: {error}");
    }
    println!(
        "{flavor}: {name}: {cases} cases, {} commands, {:.1?}",
        target.sent - sent,
        started.elapsed()
    );
}

fn fuzz(flavor: Flavor) {
    let Some(binary) = available_servers().into_iter().find(|b| b.flavor == flavor) else {
        eprintln!(
            "skipped: {} is not installed (scripts/install-deps.sh)",
            flavor.name()
        );
        return;
    };
    let started = Instant::now();
    let mut target = Target::start(&binary);
    let cases = cases();
    let quarter = (cases / 4).max(1);
    property(&mut target, "arguments", cases, 1, steps(), |t, steps| {
        t.plain_batch(&steps)
    });
    property(
        &mut target,
        "transactions",
        quarter,
        2,
        (vec(call(), 1..=12), any::<bool>()),
        |t, (calls, resp3)| t.transaction_batch(&calls, resp3),
    );
    property(
        &mut target,
        "scripts",
        quarter,
        3,
        (vec(call(), 1..=12), any::<bool>(), any::<bool>()),
        |t, (calls, resp3, setresp3)| t.script_batch(&calls, resp3, resp3 && setresp3),
    );
    property(&mut target, "states", cases, 4, state_cases(), |t, case| {
        t.state_case(&case)
    });
    property(
        &mut target,
        "invariants",
        cases / 2 + 1,
        5,
        scenarios(),
        |t, scenario| t.scenario(&scenario),
    );
    target.move_clock(0).expect("resetting the clock");
    target.check_log();
    println!(
        "{}: {} commands in {:.1?}; replies to random calls:\n{}",
        flavor.name(),
        target.sent,
        started.elapsed(),
        target.outcomes()
    );
}

#[test]
fn fuzz_redis_7_0() {
    fuzz(Flavor::Redis70);
}

#[test]
fn fuzz_redis_8_2() {
    fuzz(Flavor::Redis82);
}

#[test]
fn fuzz_valkey_9_1() {
    fuzz(Flavor::Valkey91);
}

// ---------------------------------------------------------------------------------------
// Regression tests for the bugs the fuzzer found
// ---------------------------------------------------------------------------------------

/// Runs `check` on every available server; it returns the contract violations it saw.
fn on_every_server(check: impl Fn(&mut Target) -> Result<Vec<String>, String>) {
    let mut violations = Vec::new();
    for binary in available_servers() {
        let mut target = Target::start(&binary);
        let found = check(&mut target).unwrap_or_else(|e| panic!("{}: {e}", binary.name()));
        violations.extend(found.into_iter().map(|v| format!("{}: {v}", binary.name())));
        target.move_clock(0).expect("resetting the clock");
        target.check_log();
    }
    assert!(violations.is_empty(), "\n{}", violations.join("\n"));
}

/// A command line as bytes.
fn parts_of<'a>(call: &[&'a str]) -> Vec<&'a [u8]> {
    call.iter().map(|p| p.as_bytes()).collect()
}

/// The decision fields of a RESP2 reply to `call`.
fn decide(target: &mut Target, call: &[&str]) -> Result<[i64; 5], String> {
    let reply = target.query(false, &parts_of(call))?;
    decision_fields(&reply).map_err(|e| format!("{call:?}: {e}"))
}

/// The integer field `name` of a RESP2 RL.STATUS reply (the first, if it were repeated:
/// `status_names_each_field_once` checks that).
fn status_field(status: &Value, name: &str) -> Option<i64> {
    let Value::Array(items) = status else {
        return None;
    };
    items.chunks(2).find_map(|pair| match pair {
        [key, Value::Int(n)] if text_of(key).as_deref() == Some(name) => Some(*n),
        _ => None,
    })
}

/// The server's clock in milliseconds (with the offset at 0).
fn server_ms(t: &mut Target) -> Result<i64, String> {
    Ok(i64::try_from(t.server_micros()? / 1_000).unwrap_or(i64::MAX))
}

/// The words of a command line.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// When a limiter taken at the bounds is full again.
#[derive(Clone, Copy)]
enum Reset {
    /// This many ms after the call.
    After(i64),
    /// A lease of this many ms: it expires at the call's time rounded up to the next ms,
    /// plus the lease (never short), so `reset_after_ms` is the lease or 1 ms more.
    Lease(i64),
    /// At this Unix time in ms (the end of an epoch-aligned window).
    At(i64),
}

/// "Values too large to compute exactly are rejected with an error, never wrapped or
/// saturated silently" (spec, Errors): every duration is at most 10^13 ms, every count at
/// most 2^62, and the per-algorithm bounds hold (`docs/commands.md`, Ranges). A larger value
/// is the error that gives the bound, writes nothing, and is not a state RL.SETSTATE takes;
/// a value at the bound is taken and replied exactly. (The module used to take any RL.FIXED
/// limit and window, any RL.SLIDING window and any refill_tokens, and saturated the replies
/// at `i64::MAX`.)
#[test]
fn huge_limits_and_windows_are_refused_not_saturated() {
    const WINDOW: &str = "ERR window_ms must be at most 10000000000000";
    const COUNT_LIMIT: &str = "ERR limit must be at most 4611686018427387904";
    const REFILL_TOKENS: &str = "ERR refill_tokens must be at most 4611686018427387904";
    const REFILL_MS: &str = "ERR refill_ms must be at most 10000000000000";
    const APPROX_LIMIT: &str = "ERR limit must be at most 1099511627776";
    const APPROX_WINDOW: &str = "ERR window_ms must be at most 1099511627776";
    const COST: &str = "ERR COST must be at most 4611686018427387904";
    let refused: &[(&str, &str)] = &[
        ("RL.FIXED reg:fixed 18446744073709551615 1000", COUNT_LIMIT),
        ("RL.FIXED reg:fixed 4611686018427387905 1000", COUNT_LIMIT),
        ("RL.FIXED reg:fixed 10 18446744073709551615", WINDOW),
        ("RL.FIXED reg:fixed 10 9223372036854775807", WINDOW),
        ("RL.FIXED reg:fixed 10 10000000000001", WINDOW),
        ("RL.SLIDING reg:sliding 10 18446744073709551615", WINDOW),
        ("RL.SLIDING reg:sliding 10 10000000000001", WINDOW),
        (
            "RL.SLIDING reg:sliding 65537 1000",
            "ERR limit must be at most 65536 for an exact log (use APPROX above)",
        ),
        (
            "RL.SLIDING reg:approx 1099511627777 1000 APPROX",
            APPROX_LIMIT,
        ),
        (
            "RL.SLIDING reg:approx 10 1099511627777 APPROX",
            APPROX_WINDOW,
        ),
        (
            "RL.TOKENBUCKET reg:bucket 5 18446744073709551615 1000",
            REFILL_TOKENS,
        ),
        (
            "RL.TOKENBUCKET reg:bucket 5 4611686018427387905 1000",
            REFILL_TOKENS,
        ),
        ("RL.TOKENBUCKET reg:bucket 1 1 10000000000001", REFILL_MS),
        (
            "RL.TOKENBUCKET reg:bucket 4611686018427388 1 1",
            "ERR capacity must be at most 4611686018427387 when refill_ms is 1",
        ),
        (
            "RL.TOKENBUCKET reg:bucket 462 1 10000000000000",
            "ERR capacity must be at most 461 when refill_ms is 10000000000000",
        ),
        (
            "RL.TOKENBUCKET reg:bucket 1 1 1 MAXWAIT 4611686018427388",
            "ERR MAXWAIT must be at most 4611686018427387",
        ),
        (
            "RL.ACQUIRE reg:leases 1 10000000000001 job",
            "ERR lease_ms must be at most 10000000000000",
        ),
        (
            "RL.ACQUIRE reg:leases 1001 1000 job",
            "ERR limit must be at most 1000",
        ),
        ("RL.ALL 1 reg:all FIXED 10 10000000000001", WINDOW),
        (
            "RL.ALL 1 reg:all FIXED 4611686018427387905 1000",
            COUNT_LIMIT,
        ),
        ("RL.ALL 1 reg:all SLIDING 10 10000000000001", WINDOW),
        (
            "RL.ALL 1 reg:all SLIDING 10 1099511627777 APPROX",
            APPROX_WINDOW,
        ),
        (
            "RL.ALL 1 reg:all TOKENBUCKET 5 18446744073709551615 1000",
            REFILL_TOKENS,
        ),
        ("RL.ALL 1 reg:all TOKENBUCKET 1 1 10000000000001", REFILL_MS),
        // Beyond u64: the argument's own bound, not the parser's.
        ("RL.SLIDING reg:sliding 10 99999999999999999999", WINDOW),
        ("RL.FIXED reg:fixed 99999999999999999999 1000", COUNT_LIMIT),
        ("RL.ALL 1 reg:all FIXED 10 99999999999999999999", WINDOW),
        (
            "RL.TOKENBUCKET reg:bucket 99999999999999999999 1 1000",
            "ERR capacity must be at most 4611686018427 when refill_ms is 1000",
        ),
        (
            "RL.TOKENBUCKET reg:bucket 1 1 1 MAXWAIT 99999999999999999999",
            "ERR MAXWAIT must be at most 4611686018427387",
        ),
        (
            "RL.ACQUIRE reg:leases 99999999999999999999 1000 job",
            "ERR limit must be at most 1000",
        ),
        // Costs and quantities are counts: at most 2^62.
        ("RL.FIXED reg:fixed 10 1000 COST 4611686018427387905", COST),
        ("RL.FIXED reg:fixed 10 1000 COST 18446744073709551615", COST),
        (
            "RL.SLIDING reg:sliding 10 1000 COST 99999999999999999999",
            COST,
        ),
        (
            "RL.ALL 1 reg:all FIXED 10 1000 COST 4611686018427387905",
            COST,
        ),
        (
            "RL.THROTTLE reg:throttle 1 1 1 4611686018427387905",
            "ERR quantity must be at most 4611686018427387904",
        ),
        (
            "RL.THROTTLE reg:throttle 1 1 99999999999999999999",
            "ERR period_s must be at most 9223372036",
        ),
        (
            "RL.THROTTLE reg:throttle 1 1 0",
            "ERR period_s must be a positive integer",
        ),
    ];
    let duration = 10_000_000_000_000;
    let approx_window = 1 << 40;
    let max_count = 1 << 62;
    // The APPROX window now is [k * 2^40, (k + 1) * 2^40); a count in it weighs until the
    // end of the next one.
    let now_ms = i64::try_from(wall_micros() / 1_000).unwrap_or(i64::MAX);
    let approx_end = (now_ms / approx_window + 2) * approx_window;
    // At the bounds: taken, every number replied as it is: [allowed, limit, remaining,
    // retry_after_ms], and reset_after_ms.
    let at_bounds: &[(&str, [i64; 4], Reset)] = &[
        (
            "RL.FIXED reg:fixed-max 4611686018427387904 10000000000000",
            [1, max_count, max_count - 1, 0],
            // The first window, [0, 10^13), ends in 2286.
            Reset::At(duration),
        ),
        (
            "RL.SLIDING reg:sliding-max 65536 10000000000000",
            [1, 1 << 16, (1 << 16) - 1, 0],
            Reset::After(duration),
        ),
        (
            "RL.SLIDING reg:approx-max 1099511627776 1099511627776 APPROX",
            [1, approx_window, approx_window - 1, 0],
            Reset::At(approx_end),
        ),
        (
            "RL.TOKENBUCKET reg:bucket-slow 461 1 10000000000000",
            [1, 461, 460, 0],
            Reset::After(duration),
        ),
        (
            "RL.TOKENBUCKET reg:bucket-fast 1 4611686018427387904 1",
            [1, 1, 0, 0],
            Reset::After(1),
        ),
        (
            // One token borrowed, repaid in 1 ms; the bucket is full 1 ms later.
            "RL.TOKENBUCKET reg:bucket-wait 1 1 1 COST 2 MAXWAIT 4611686018427387",
            [1, 1, 0, 1],
            Reset::After(2),
        ),
        (
            "RL.ACQUIRE reg:leases-max 1000 10000000000000 job",
            [1, 1_000, 999, 0],
            Reset::Lease(duration),
        ),
    ];
    // The hand-written states are the encoding's.
    let fixed = FixedWindow::new(10, 1_000).expect("a valid window");
    let count = redlimit_core::WindowCount {
        end_ms: 5_000,
        count: 2,
    };
    assert_eq!(
        hand_state(3, &[10, 1_000, 5_000, 2]),
        Limiter::Fixed(fixed, count).encode()
    );
    on_every_server(|t| {
        let mut violations = Vec::new();
        for &(line, error) in refused {
            let call = words(line);
            let key = if call[0] == "RL.ALL" {
                call[2]
            } else {
                call[1]
            };
            t.ok(&[b"DEL", key.as_bytes()])?;
            for resp3 in [false, true] {
                let reply = t.query(resp3, &parts_of(&call))?;
                if error_text(&reply).as_deref() != Some(error) {
                    violations.push(format!(
                        "{line} (RESP3: {resp3}): expected {error:?}, got {reply:?}"
                    ));
                }
            }
            if t.ok(&[b"EXISTS", key.as_bytes()])? != Value::Int(0) {
                violations.push(format!("{line} was refused, yet {key} exists"));
            }
        }

        for &(line, want, reset) in at_bounds {
            let before = server_ms(t)?;
            let got = decide(t, &words(line))?;
            let after = server_ms(t)?;
            let (least, most) = match reset {
                Reset::After(ms) => (ms, ms),
                Reset::Lease(ms) => (ms, ms + 1),
                Reset::At(at) => (at - after, at - before),
            };
            if got[..4] != want || !(least..=most).contains(&got[4]) {
                violations.push(format!(
                    "{line}: expected {want:?} with reset_after_ms in {least}..={most}, got {got:?}"
                ));
            }
        }
        let line = "RL.ALL 1 reg:all-max FIXED 4611686018427387904 10000000000000";
        let all = t.query(false, &parts_of(&words(line)))?;
        let all_fields = match &all {
            Value::Array(items) if items.len() == 2 && items[0] == Value::Int(1) => {
                decision_fields(&items[1]).ok()
            }
            _ => None,
        };
        if all_fields.is_none_or(|f| f[..4] != [1, max_count, max_count - 1, 0]) {
            violations.push(format!("{line}: answered {all:?}"));
        }

        // States: beyond the bounds refused, at the bounds stored and reported exactly.
        let now_us = t.server_micros()?;
        let max_count = max_count.unsigned_abs();
        let duration = duration.unsigned_abs();
        let beyond = [
            (
                "fixed limit 2^62 + 1",
                hand_state(3, &[max_count + 1, 1_000, duration, 0]),
            ),
            (
                "fixed window_ms 10^13 + 1",
                hand_state(3, &[10, duration + 1, duration, 0]),
            ),
            (
                "sliding window_ms 10^13 + 1",
                hand_state(4, &[10, duration + 1, 0]),
            ),
            (
                "approx window_ms 2^40 + 1",
                hand_state(5, &[10, (1 << 40) + 1, 0, 0, 0]),
            ),
            (
                "bucket refill_tokens 2^62 + 1",
                hand_state(1, &[5, max_count + 1, 1_000, 0, now_us]),
            ),
            (
                "bucket refill_ms 10^13 + 1",
                hand_state(1, &[1, 1, duration + 1, 0, now_us]),
            ),
            (
                "leases lease_ms 10^13 + 1",
                hand_state(6, &[1, duration + 1, 0]),
            ),
        ];
        for (what, state) in beyond {
            let reply = t.query(false, &[b"RL.SETSTATE", b"reg:state", &state])?;
            let refused = error_text(&reply)
                .is_some_and(|e| e.starts_with("ERR state must be a redlimit state"));
            if !refused {
                violations.push(format!(
                    "RL.SETSTATE with a {what}: expected ERR state must be a redlimit state, got {reply:?}"
                ));
            }
        }
        if t.ok(&[b"EXISTS", b"reg:state"])? != Value::Int(0) {
            violations.push("refused states created reg:state".to_owned());
        }
        let stored = [
            (
                "reg:state-fixed",
                hand_state(3, &[max_count, duration, duration, 1]),
                [
                    ("limit", max_count),
                    ("window_ms", duration),
                    ("remaining", max_count - 2),
                ],
            ),
            (
                "reg:state-bucket",
                // One token missing, back in 10^13 ms.
                hand_state(1, &[461, 1, duration, duration * 1_000, now_us]),
                [
                    ("capacity", 461),
                    ("refill_ms", duration),
                    ("remaining", 459),
                ],
            ),
        ];
        for (key, state, fields) in stored {
            let reply = t.query(false, &[b"RL.SETSTATE", key.as_bytes(), &state])?;
            if reply != Value::Okay {
                violations.push(format!(
                    "RL.SETSTATE {key} at the bounds answered {reply:?}"
                ));
                continue;
            }
            let status = t.query(false, &[b"RL.STATUS", key.as_bytes()])?;
            for (name, value) in fields {
                if status_field(&status, name).and_then(|n| u64::try_from(n).ok()) != Some(value) {
                    violations.push(format!(
                        "RL.STATUS {key} after a state at the bounds: expected {name} {value}, got {status:?}"
                    ));
                }
            }
        }
        Ok(violations)
    });
}

/// Syntax errors name what is wrong (issue 11): the unknown word (escaped, cut at 40
/// bytes), the repeated option, the option missing its value, RL.ALL's unknown policy
/// name and its missing policies; and a decision is the same array of five integers under
/// RESP2 and RESP3 (RL.ALL's `allowed` too). The module used to answer a bare
/// `ERR syntax error` and a RESP3 map.
#[test]
fn errors_name_the_token_and_decisions_are_flat_arrays() {
    let long = "x".repeat(41);
    let cases: Vec<(Vec<&[u8]>, String)> = vec![
        (
            parts_of(&words("RL.SLIDING reg:syntax 10 1000 APROX")),
            "ERR syntax error near 'APROX'".to_owned(),
        ),
        (
            vec![b"RL.FIXED", b"reg:syntax", b"10", b"1000", b"a\xff\r\n'"],
            "ERR syntax error near 'a\\xff\\r\\n\\''".to_owned(),
        ),
        (
            vec![b"RL.FIXED", b"reg:syntax", b"10", b"1000", b"a\xff\r\n"],
            "ERR syntax error near 'a\\xff\\r\\n'".to_owned(),
        ),
        (
            vec![b"RL.FIXED", b"reg:syntax", b"10", b"1000", long.as_bytes()],
            format!("ERR syntax error near '{}...'", &long[..40]),
        ),
        (
            parts_of(&words("RL.SLIDING reg:syntax 10 1000 COST 2 cost 3")),
            "ERR syntax error: COST given twice".to_owned(),
        ),
        (
            parts_of(&words("RL.SLIDING reg:syntax 10 1000 approx APPROX")),
            "ERR syntax error: APPROX given twice".to_owned(),
        ),
        (
            parts_of(&words("RL.FIXED reg:syntax 10 1000 PEEK peek")),
            "ERR syntax error: PEEK given twice".to_owned(),
        ),
        (
            parts_of(&words("RL.SLIDING reg:syntax 10 1000 COST")),
            "ERR syntax error: COST needs a value (COST n)".to_owned(),
        ),
        (
            parts_of(&words("RL.TOKENBUCKET reg:syntax 1 1 1 MAXWAIT")),
            "ERR syntax error: MAXWAIT needs a value (MAXWAIT ms)".to_owned(),
        ),
        (
            parts_of(&words("RL.FIXED reg:syntax 10 1000 MAXWAIT 5")),
            "ERR syntax error near 'MAXWAIT'".to_owned(),
        ),
        (
            parts_of(&words("RL.ALL 2 reg:a reg:b SLIDING 10 60000")),
            "ERR RL.ALL needs one policy per key: 2 keys but 1 policies".to_owned(),
        ),
        (
            parts_of(&words("RL.ALL 3 reg:a reg:b reg:c FIXED 1 1000 cost 1")),
            "ERR RL.ALL needs one policy per key: 3 keys but 1 policies".to_owned(),
        ),
        (
            parts_of(&words("RL.ALL 2 reg:a reg:b FIXED 1 1000 FIXD 1 1000")),
            "ERR syntax error near 'FIXD' (policy 2 of 2 must be TOKENBUCKET, SLIDING or FIXED)"
                .to_owned(),
        ),
        (
            parts_of(&words("RL.ALL 1 reg:a PEEK 1")),
            "ERR syntax error near 'PEEK' (policy 1 of 1 must be TOKENBUCKET, SLIDING or FIXED)"
                .to_owned(),
        ),
    ];
    on_every_server(|t| {
        let mut violations = Vec::new();
        for (call, error) in &cases {
            for resp3 in [false, true] {
                let reply = t.query(resp3, call)?;
                if error_text(&reply).as_deref() != Some(error.as_str()) {
                    let shown: Vec<String> = call.iter().map(|p| show(p)).collect();
                    violations.push(format!(
                        "{} (RESP3: {resp3}): expected {error:?}, got {reply:?}",
                        shown.join(" ")
                    ));
                }
            }
        }
        for resp3 in [false, true] {
            let call = words("RL.FIXED reg:flat 10 100000");
            let reply = t.query(resp3, &parts_of(&call))?;
            if !matches!(decision_fields(&reply), Ok([1, 10, _, 0, _])) {
                violations.push(format!("{call:?} (RESP3: {resp3}) answered {reply:?}"));
            }
            let call = words("RL.ALL 2 reg:flat reg:flat2 FIXED 10 100000 SLIDING 5 1000");
            let reply = t.query(resp3, &parts_of(&call))?;
            let flat = match &reply {
                Value::Array(items) if items.len() == 3 && items[0] == Value::Int(1) => items[1..]
                    .iter()
                    .all(|item| matches!(decision_fields(item), Ok([1, ..]))),
                _ => false,
            };
            if !flat {
                violations.push(format!("{call:?} (RESP3: {resp3}) answered {reply:?}"));
            }
        }
        Ok(violations)
    });
}

/// RL.STATUS names every field once, in the documented order: `algorithm`, the policy, then
/// the decision fields the policy did not name already. (On window and lease keys it used to
/// name `limit` twice, the policy's and the decision's, so a RESP3 map had a duplicate key:
/// 7 pairs, 6 names.)
#[test]
fn status_names_each_field_once() {
    const WINDOW: &[&str] = &[
        "algorithm",
        "limit",
        "window_ms",
        "allowed",
        "remaining",
        "retry_after_ms",
        "reset_after_ms",
    ];
    let cases: [(&[&str], &[&str], i64); 6] = [
        (
            &["RL.TOKENBUCKET", "reg:status-bucket", "5", "1", "100000"],
            &[
                "algorithm",
                "capacity",
                "refill_tokens",
                "refill_ms",
                "allowed",
                "limit",
                "remaining",
                "retry_after_ms",
                "reset_after_ms",
            ],
            5,
        ),
        (
            &["RL.THROTTLE", "reg:status-throttle", "4", "1", "100"],
            &[
                "algorithm",
                "max_burst",
                "count_per_period",
                "period",
                "allowed",
                "limit",
                "remaining",
                "retry_after_ms",
                "reset_after_ms",
            ],
            5,
        ),
        (&["RL.FIXED", "reg:status-fixed", "5", "100000"], WINDOW, 5),
        (
            &["RL.SLIDING", "reg:status-sliding", "6", "100000"],
            WINDOW,
            6,
        ),
        (
            &["RL.SLIDING", "reg:status-approx", "7", "100000", "APPROX"],
            WINDOW,
            7,
        ),
        (
            &["RL.ACQUIRE", "reg:status-leases", "8", "100000", "job"],
            &[
                "algorithm",
                "limit",
                "lease_ms",
                "allowed",
                "remaining",
                "retry_after_ms",
                "reset_after_ms",
            ],
            8,
        ),
    ];
    on_every_server(|t| {
        let mut violations = Vec::new();
        for (call, names, limit) in cases {
            decide(t, call)?;
            let key = call[1].as_bytes();
            for resp3 in [false, true] {
                let status = t.query(resp3, &[b"RL.STATUS", key])?;
                let got: Vec<String> = match (&status, resp3) {
                    (Value::Map(fields), true) => fields
                        .iter()
                        .map(|(k, _)| text_of(k).unwrap_or_default())
                        .collect(),
                    (Value::Array(items), false) => items
                        .iter()
                        .step_by(2)
                        .map(|k| text_of(k).unwrap_or_default())
                        .collect(),
                    _ => {
                        violations.push(format!("RL.STATUS {} answered {status:?}", call[1]));
                        continue;
                    }
                };
                if got != names {
                    violations.push(format!(
                        "{call:?} then RL.STATUS {} (RESP3: {resp3}): expected the fields {names:?}, got {got:?}",
                        call[1]
                    ));
                    continue;
                }
                let fields = pairs(&status, resp3)?;
                if fields.get("limit") != Some(&Value::Int(limit)) {
                    violations.push(format!(
                        "RL.STATUS {} (RESP3: {resp3}): expected limit {limit}, got {status:?}",
                        call[1]
                    ));
                }
                // The map's announced length matches what followed it: the connection still
                // reads replies in step.
                let pong = t.query(resp3, &[b"PING"])?;
                if text_of(&pong).as_deref() != Some("PONG") {
                    violations.push(format!(
                        "after RL.STATUS {} (RESP3: {resp3}), PING answered {pong:?}",
                        call[1]
                    ));
                }
            }
        }
        Ok(violations)
    });
}

/// A limiter written with the clock ahead, then called with the clock moved back.
struct BackCase {
    /// The call that writes (clock ahead).
    write: &'static [&'static str],
    /// The call that is then denied (clock back); it takes `PEEK` where `peeks`.
    check: &'static [&'static str],
    peeks: bool,
    /// Milliseconds per unit of the reply (redis-cell's seconds for RL.THROTTLE).
    unit: i64,
    /// Besides the wait for the clock, `retry_after` and `reset_after` are within this
    /// (milliseconds).
    wait: (i64, i64),
}

/// After the clock moves back (a lower `redlimit.clock-offset-ms`, an NTP step, a failover
/// to a server behind), a state written at the later clock admits nothing until the clock
/// is back at the state's time, and `retry_after` and `reset_after` say so: they are the
/// wait for the clock plus what the state itself asks, and a retry at that moment succeeds.
/// (RL.TOKENBUCKET, retry and reset, and RL.SLIDING APPROX, retry, used to leave out the wait
/// for the clock and told the client to retry ~10^8 ms too early.)
#[test]
fn retry_and_reset_after_a_clock_moved_back_include_the_wait_for_the_clock() {
    let cases = [
        BackCase {
            write: &["RL.TOKENBUCKET", "reg:back-bucket", "1", "1", "1000"],
            check: &["RL.TOKENBUCKET", "reg:back-bucket", "1", "1", "1000"],
            peeks: true,
            unit: 1,
            // The token taken refills in 1 s from the state's time.
            wait: (1_000, 1_000),
        },
        BackCase {
            write: &["RL.SLIDING", "reg:back-approx", "1", "1000", "APPROX"],
            check: &["RL.SLIDING", "reg:back-approx", "1", "1000", "APPROX"],
            peeks: true,
            unit: 1,
            // The count weighs until the end of the window after the one it is in.
            wait: (1_000, 2_000),
        },
        BackCase {
            write: &["RL.SLIDING", "reg:back-sliding", "1", "1000"],
            check: &["RL.SLIDING", "reg:back-sliding", "1", "1000"],
            peeks: true,
            unit: 1,
            wait: (1_000, 1_000),
        },
        BackCase {
            write: &["RL.FIXED", "reg:back-fixed", "1", "1000"],
            check: &["RL.FIXED", "reg:back-fixed", "1", "1000"],
            peeks: true,
            unit: 1,
            wait: (0, 1_000),
        },
        BackCase {
            write: &["RL.ACQUIRE", "reg:back-leases", "1", "1000", "job-1"],
            check: &["RL.ACQUIRE", "reg:back-leases", "1", "1000", "job-2"],
            peeks: false,
            unit: 1,
            wait: (1_000, 1_000),
        },
        BackCase {
            write: &["RL.THROTTLE", "reg:back-throttle", "0", "1", "1"],
            check: &["RL.THROTTLE", "reg:back-throttle", "0", "1", "1"],
            peeks: false,
            unit: 1_000,
            wait: (1_000, 1_000),
        },
    ];
    on_every_server(|t| {
        let back_ms: i64 = 100_000_000;
        let back = decimal(back_ms);
        // Everything in one transaction: where the server freezes time for it, the clock
        // is exactly `back_ms` behind the writes.
        let started = server_ms(t)?;
        t.ok(&[b"MULTI"])?;
        t.query(
            false,
            &[b"CONFIG", b"SET", b"redlimit.clock-offset-ms", &back],
        )?;
        for case in &cases {
            t.query(false, &parts_of(case.write))?;
        }
        t.query(
            false,
            &[b"CONFIG", b"SET", b"redlimit.clock-offset-ms", b"0"],
        )?;
        for case in &cases {
            t.query(false, &parts_of(case.check))?;
            t.query(false, &[b"RL.STATUS", case.check[1].as_bytes()])?;
        }
        let exec = t.ok(&[b"EXEC"])?;
        let elapsed = server_ms(t)? - started;
        let Value::Array(replies) = exec else {
            return Err(format!("EXEC answered {exec:?}"));
        };
        let errors: Vec<String> = replies.iter().filter_map(error_text).collect();
        if !errors.is_empty() || replies.len() != 2 + 3 * cases.len() {
            return Err(format!("EXEC answered {replies:?}"));
        }
        let written = &replies[1..=cases.len()];
        let checked = &replies[2 + cases.len()..];
        // The clock is back_ms behind the writes, less the time the transaction took where
        // the server does not freeze it.
        let lag = if t.freezes_time() {
            (back_ms, back_ms)
        } else {
            (back_ms - elapsed - 1, back_ms)
        };
        let mut violations = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let throttle = case.unit > 1;
            let wrote = decision_fields(&written[i])?;
            let fields = decision_fields(&checked[2 * i])?;
            // Allowed is 1, except for redis-cell's "limited" (0 = allowed).
            let denied = if throttle { 1 } else { 0 };
            if wrote[0] == denied || fields[0] != denied {
                violations.push(format!(
                    "{:?} with the clock {back_ms} ms ahead answered {wrote:?}, then {:?} {fields:?}: \
                     expected allowed, then denied",
                    case.write, case.check
                ));
                continue;
            }
            // redis-cell rounds to seconds: at most a second either way.
            let rounding = if throttle { 1_000 } else { 1 };
            let least = lag.0 + case.wait.0 - rounding;
            let most = lag.1 + case.wait.1 + rounding;
            let (retry, reset) = (fields[3] * case.unit, fields[4] * case.unit);
            for (name, value) in [("retry_after", retry), ("reset_after", reset)] {
                if !(least..=most).contains(&value) {
                    violations.push(format!(
                        "{:?} after the clock moved back {back_ms} ms: expected {name} within \
                         {least}..={most} ms, got {fields:?}",
                        case.check
                    ));
                }
            }
            if !throttle {
                let status = &checked[2 * i + 1];
                let status = ["retry_after_ms", "reset_after_ms"].map(|n| status_field(status, n));
                if status != [Some(fields[3]), Some(fields[4])] && t.freezes_time() {
                    violations.push(format!(
                        "RL.STATUS {} at the same instant as {:?} answered {status:?}, the call {fields:?}",
                        case.check[1], case.check
                    ));
                }
            }
        }
        if !violations.is_empty() {
            return Ok(violations);
        }
        // The waits are right, not just long enough: shortly before the retry the request is
        // still denied, 1 ms after it allowed, and 1 ms after the reset the limiter is full.
        for (i, case) in cases.iter().enumerate() {
            let fields = decision_fields(&checked[2 * i])?;
            let (retry, reset) = (fields[3] * case.unit, fields[4] * case.unit);
            let mut check = case.check.to_vec();
            if case.peeks {
                check.push("PEEK");
            }
            let early = if case.unit > 1 { 1_500 } else { 500 };
            let allowed = |f: [i64; 5]| f[0] == i64::from(case.unit == 1);
            t.move_clock(retry - early)?;
            let before_retry = decide(t, &check)?;
            t.move_clock(retry + 1)?;
            let at_retry = decide(t, &check)?;
            if allowed(before_retry) || !allowed(at_retry) {
                violations.push(format!(
                    "{check:?} with retry_after {retry} ms: {early} ms before it answered \
                     {before_retry:?}, 1 ms after it {at_retry:?}"
                ));
            }
            if case.peeks {
                t.move_clock(reset + 1)?;
                let at_reset = decide(t, &check)?;
                if !allowed(at_reset) || at_reset[2] != at_reset[1] - 1 {
                    violations.push(format!(
                        "{check:?} with reset_after {reset} ms: 1 ms after it answered \
                         {at_reset:?}, expected a full limiter"
                    ));
                }
            }
            t.move_clock(0)?;
        }
        Ok(violations)
    });
}

// ---------------------------------------------------------------------------------------
// Regression: states with far-future times
// ---------------------------------------------------------------------------------------

/// "Values too large to compute exactly are rejected with an error, never wrapped or
/// saturated silently" (spec, Errors). RL.SETSTATE used to take a sliding, APPROX or lease
/// state whose stored time is `u64::MAX` ms, whose decisions then answered
/// `retry_after_ms`/`reset_after_ms` saturated at `i64::MAX` (found by the `states`
/// property, seed 20261123, 2048 cases). States with times past 10^14 ms are refused now.
#[test]
fn far_future_states_are_refused() {
    let far = u64::MAX;
    let cases = [
        // An exact log of limit 1 whose one entry (cost 1) is at u64::MAX ms.
        (
            "reg:far-sliding",
            [hand_state(4, &[1, 1_000, far]), varints(&[0, 1])].concat(),
        ),
        // An APPROX window of limit 1 starting at u64::MAX ms, holding 1.
        ("reg:far-approx", hand_state(5, &[1, 1_000, far, 0, 1])),
        // One lease ("a") of a limit of 1, expiring at u64::MAX ms.
        (
            "reg:far-leases",
            [
                hand_state(6, &[1, 1_000, 1]),
                varints(&[far, 1]),
                bytes("a"),
            ]
            .concat(),
        ),
    ];
    on_every_server(|t| {
        let mut violations = Vec::new();
        for (key, state) in &cases {
            let reply = t.query(false, &[b"RL.SETSTATE", key.as_bytes(), state])?;
            if error_text(&reply).is_some_and(|e| {
                e == "ERR state must be a redlimit state (a time beyond the year 5000)"
            }) {
                continue;
            }
            violations.push(format!(
                "RL.SETSTATE {key} {} answered {reply:?}, not the refusal",
                show(state)
            ));
        }
        Ok(violations)
    });
}
