//! Writes the seed corpora of the fuzz targets into `fuzz/seeds/<target>/`: valid
//! encodings of every algorithm (fresh, in use, at the limit), the same states as
//! `decide` inputs, and typical command arguments. Run from `fuzz/`:
//! `cargo run --bin make-seeds`.

use redlimit_core::{
    Concurrency, FixedWindow, Limiter, MAX_TIME_MS, Policy, Request, SlidingCounter, SlidingWindow,
    Throttle, Timestamp, TokenBucket,
};
use redlimit_fuzz::DecideInput;
use std::path::Path;

const NOW_MS: u64 = 1_700_000_000_123;

/// Policies of each algorithm with their constructor numbers, as `decide` seeds name them.
fn policies() -> Vec<(&'static str, u8, [u64; 3], Policy)> {
    let ok = |result: Result<Policy, redlimit_core::ArgumentError>| {
        result.unwrap_or_else(|error| panic!("seed policy: {error}"))
    };
    vec![
        (
            "tokenbucket",
            0,
            [10, 1, 1_000],
            ok(TokenBucket::new(10, 1, 1_000).map(Policy::TokenBucket)),
        ),
        (
            "throttle",
            1,
            [4, 10, 60],
            ok(Throttle::new(4, 10, 60).map(Policy::Throttle)),
        ),
        (
            "fixed",
            2,
            [5, 1_000, 0],
            ok(FixedWindow::new(5, 1_000).map(Policy::Fixed)),
        ),
        (
            "sliding",
            3,
            [5, 1_000, 0],
            ok(SlidingWindow::new(5, 1_000).map(Policy::Sliding)),
        ),
        (
            "approx",
            4,
            [5, 1_000, 0],
            ok(SlidingCounter::new(5, 1_000).map(Policy::SlidingApprox)),
        ),
    ]
}

/// States of `policy`: after 1, 3 and enough calls to reach the limit, 7 ms apart.
fn states(policy: &Policy) -> Vec<Limiter> {
    let mut out = Vec::new();
    let mut stored: Option<Limiter> = None;
    for call in 0..12u64 {
        let now = Timestamp::from_millis(NOW_MS + 7 * call);
        let outcome = policy
            .decide(stored.as_ref(), now, Request::new(1))
            .unwrap_or_else(|error| panic!("seed decide: {error}"));
        if let Some(update) = outcome.update {
            if matches!(call, 0 | 2 | 4 | 11) {
                out.push(update.clone());
            }
            stored = Some(update);
        }
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap_or_else(|error| panic!("{dir:?}: {error}"));
    std::fs::write(dir.join(name), bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
}

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let (decode, decide, args) = (
        seeds.join("decode"),
        seeds.join("decide"),
        seeds.join("args"),
    );
    for (name, algorithm, numbers, policy) in policies() {
        let fresh = DecideInput {
            algorithm,
            numbers,
            cost: 1,
            max_wait_ms: if algorithm == 0 { 2_000 } else { 0 },
            now_micros: NOW_MS * 1_000,
            ..DecideInput::default()
        };
        write(&decide, &format!("{name}-fresh"), &fresh.to_bytes());
        for (index, state) in states(&policy).iter().enumerate() {
            let encoded = state.encode();
            write(&decode, &format!("{name}-{index}"), &encoded);
            let later = DecideInput {
                state: encoded,
                now_micros: (NOW_MS + 500) * 1_000,
                ..fresh.clone()
            };
            write(&decide, &format!("{name}-{index}"), &later.to_bytes());
        }
    }
    // Leases: two holders, then one renewed.
    let lease = Concurrency::new(3, 30_000).unwrap_or_else(|error| panic!("{error}"));
    let mut held = None;
    for (step, id) in [&b"worker-1"[..], b"worker-2", b"worker-1"]
        .iter()
        .enumerate()
    {
        let now = Timestamp::from_millis(NOW_MS + 100 * step as u64);
        if let Some(update) = lease.acquire(held.as_ref(), now, id, false).update {
            held = Some(update);
        }
        let Some(leases) = &held else { continue };
        let encoded = Limiter::Concurrency(lease, Box::new(leases.clone())).encode();
        write(&decode, &format!("concurrency-{step}"), &encoded);
        let input = DecideInput {
            algorithm: 5,
            numbers: [3, 30_000, 0],
            cost: 1,
            now_micros: (NOW_MS + 1_000) * 1_000,
            id: b"worker-3".to_vec(),
            state: encoded,
            ..DecideInput::default()
        };
        write(&decide, &format!("concurrency-{step}"), &input.to_bytes());
    }
    // A state at the decoder's time bound.
    let late = Limiter::Fixed(
        FixedWindow::new(5, 1_000).unwrap_or_else(|error| panic!("{error}")),
        redlimit_core::WindowCount {
            end_ms: MAX_TIME_MS,
            count: 5,
        },
    );
    write(&decode, "fixed-latest", &late.encode());
    // Arguments: accepted-option mask, then NUL-separated words.
    let arg_seeds: [(&str, u8, &[&[u8]]); 7] = [
        ("empty", 0x0f, &[]),
        ("cost-peek", 0x0b, &[b"COST", b"5", b"peek"]),
        ("maxwait", 0x07, &[b"maxwait", b"250", b"Cost", b"0"]),
        ("approx", 0x0b, &[b"APPROX", b"PEEK"]),
        ("twice", 0x0f, &[b"PEEK", b"peek"]),
        ("big", 0x01, &[b"COST", b"18446744073709551616"]),
        (
            "negative-zero",
            0x35,
            &[b"-0", b"-00", b"-1", b"007", b"\xff"],
        ),
    ];
    for (name, mask, words) in arg_seeds {
        let mut bytes = vec![mask];
        bytes.extend(words.join(&0u8));
        write(&args, name, &bytes);
    }
}
