//! Strategies for command lines: numbers at every boundary, junk bytes, keys of every
//! kind, options in any order, and the arguments of every command.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::commands::{Call, Command, bytes, decimal};
use crate::settings::{LONG, MAX_LEASE_ID_LEN};
use crate::strategies::limiters::state_bytes;

/// Numbers at and beyond every boundary the commands have, and things that look like numbers.
pub const BOUNDARIES: &[&str] = &[
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
pub const OTHER_KEYS: [(&str, &str); 6] = [
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
pub const FREE_KEYS: [&str; 2] = ["fz:a", "fz:b"];
/// Lease ids the calls share, so that they meet.
pub const LEASE_IDS: [&str; 3] = ["job-1", "job-2", "job-3"];

pub fn pool() -> Vec<&'static str> {
    let mut pool: Vec<&str> = OTHER_KEYS.iter().map(|(key, _)| *key).collect();
    pool.extend(SEEDED_KEYS);
    pool.extend(FREE_KEYS);
    pool
}

pub fn is_pool_key(key: &[u8]) -> bool {
    pool().iter().any(|k| k.as_bytes() == key)
}

/// A long run of one byte: digits make huge numbers, others long junk.
fn long_string() -> BoxedStrategy<Vec<u8>> {
    (0..=LONG, select(b"09aZ\0\xff- ".to_vec()))
        .prop_map(|(len, byte)| vec![byte; len])
        .boxed()
}

/// Random bytes: mostly short, sometimes up to 64 KiB.
pub fn junk() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => vec(any::<u8>(), 0..24),
        1 => vec(any::<u8>(), 0..512),
        1 => long_string(),
    ]
    .boxed()
}

/// A numeric argument: valid small values, boundaries, wide random integers, junk.
pub fn number() -> BoxedStrategy<Vec<u8>> {
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

pub fn key() -> BoxedStrategy<Vec<u8>> {
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
pub fn options() -> BoxedStrategy<Vec<Vec<u8>>> {
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

pub fn call() -> BoxedStrategy<Call> {
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
