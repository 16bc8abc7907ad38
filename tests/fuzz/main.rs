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
//! (see [`throttle_most_remaining`](oracle::throttle_most_remaining)).
//!
//! The module bugs the fuzzer found are fixed; regression tests at the end pin the fixed
//! behaviour exactly (ranges refused, retry/reset after a clock step back, RL.STATUS field
//! names, states with times beyond the year 5000 refused).

// Settings, commands, strategies.
mod commands;
mod settings;
mod strategies;

// The oracle: the key model, the replies allowed, the checks.
mod keyspace;
mod oracle;

// The server under test and the properties run on it.
mod batches;
mod invariants;
mod properties;
mod states;
mod target;

// Regression tests for the bugs the fuzzer found.
mod regressions;

use properties::fuzz;
use redlimit_test_support::Flavor;

// Every test is declared here, at the crate root, so that its name is the one it had when
// the fuzzer was one file (`cargo nextest list --test fuzz`).

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

#[test]
fn huge_limits_and_windows_are_refused_not_saturated() {
    regressions::ranges::huge_limits_and_windows_are_refused_not_saturated();
}

#[test]
fn errors_name_the_token_and_decisions_are_flat_arrays() {
    regressions::replies::errors_name_the_token_and_decisions_are_flat_arrays();
}

#[test]
fn status_names_each_field_once() {
    regressions::replies::status_names_each_field_once();
}

#[test]
fn retry_and_reset_after_a_clock_moved_back_include_the_wait_for_the_clock() {
    regressions::clock::retry_and_reset_after_a_clock_moved_back_include_the_wait_for_the_clock();
}

#[test]
fn far_future_states_are_refused() {
    regressions::ranges::far_future_states_are_refused();
}
