//! The replies the contract allows for each command.

use std::collections::{HashMap, HashSet};

use redlimit_core::{
    Algorithm, Concurrency, FixedWindow, Limiter, SlidingCounter, SlidingWindow, Throttle,
    TokenBucket,
};

use crate::commands::{Call, Command};
use crate::keyspace::{KeyState, Keyspace, state_of};
use crate::oracle::policies::{bucket_max_wait_most, check_policy_ranges};
use crate::oracle::reading::{Flag, Oracle, syntax_near};
use crate::oracle::{Expect, Failure, Rule, Success, throttle_most_remaining};
use crate::settings::{MAX_ALL_KEYS, MAX_COUNT, MAX_LEASE_ID_LEN};

fn arity() -> Expect {
    Expect {
        failures: vec![Failure::Arity],
        ..Expect::default()
    }
}

/// The replies the contract allows for `call` on `keys`.
pub fn expected(call: &Call, keys: &Keyspace) -> Expect {
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
pub fn bucket_never(policy: &TokenBucket, cost: u64, max_wait: u64) -> bool {
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
    // A token bucket's refill_tokens (its MAXWAIT bound), by policy.
    let mut refills: Vec<Option<u64>> = Vec::new();
    for index in 0..n {
        // The arguments ran out, or the options began, where policy `index` belongs.
        let missing = Failure::Exact(format!(
            "ERR RL.ALL needs one policy per key: {n} keys but {index} policies"
        ));
        let Some((word, after)) = tail.split_first() else {
            oracle.hard(missing);
            return oracle.finish(None);
        };
        let option = [&b"COST"[..], b"COSTS", b"PEEK", b"MAXWAIT"]
            .iter()
            .any(|option| word.eq_ignore_ascii_case(option));
        if index > 0 && option {
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
        refills.push((algorithm == Algorithm::TokenBucket).then_some(numbers[1]));
    }
    let flags = [Flag::Cost, Flag::Costs, Flag::Peek, Flag::MaxWait];
    let options = oracle.options_for_keys(tail, &flags, n);
    // MAXWAIT above 0 takes token buckets only, each within its own bound.
    let reserves = options.max_wait > 0;
    if reserves {
        for (index, (&(algorithm, _), refill)) in policies.iter().zip(&refills).enumerate() {
            let Some(refill) = refill else {
                let name = match algorithm {
                    Algorithm::Fixed => "FIXED",
                    Algorithm::Sliding => "SLIDING",
                    _ => "SLIDING APPROX",
                };
                oracle.hard(Failure::Exact(format!(
                    "ERR MAXWAIT must be 0 unless every policy is a TOKENBUCKET (policy {} is \
                     {name}: a window cannot hold a reservation exactly)",
                    index + 1
                )));
                break;
            };
            oracle.at_most(
                "MAXWAIT",
                Some(options.max_wait),
                bucket_max_wait_most(*refill),
            );
        }
    }
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
        .enumerate()
        .map(|(index, &(algorithm, limit))| {
            let cost = options
                .costs
                .as_ref()
                .and_then(|costs| costs.get(index).copied())
                .unwrap_or(options.cost);
            Rule {
                // A reservation answers every limit's act time, 0 for a zero cost.
                max_wait: options.max_wait,
                ..Rule::simple(algorithm, limit, cost, options.peek)
            }
        })
        .collect();
    oracle.finish(Some(Success::All(rules)))
}
