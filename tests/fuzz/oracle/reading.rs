//! Reading a call's arguments as the contract does: numbers, options, and the errors each
//! wrong argument must give.

use redlimit_core::{Algorithm, Throttle};

use crate::keyspace::{KeyState, Keyspace, state_of};
use crate::oracle::policies::{bucket_capacity_most, policy_fields};
use crate::oracle::{Expect, Failure, Success};
use crate::settings::{MAX_COUNT, MAX_DURATION_MS};

/// Collects what is wrong with a call. A *hard* failure forbids success; a *soft* one (a
/// spelling the spec does not settle, a key that may have expired) allows both.
#[derive(Default)]
pub struct Oracle {
    pub failures: Vec<Failure>,
    pub hard: bool,
    pub disagreement: Option<String>,
}

/// How a numeric argument reads.
#[derive(Clone, Copy, Debug)]
pub enum Reading {
    Exact(u64),
    /// `-0`, `007`: integers, not in the canonical spelling Redis itself requires.
    Odd(u64),
    NotANumber,
}

pub fn read_number(bytes: &[u8]) -> Reading {
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
pub enum Flag {
    Cost,
    Peek,
    MaxWait,
    Approx,
    /// `RL.ALL`'s `COSTS n1 … nk`: one cost per key.
    Costs,
}

impl Flag {
    /// The keyword, as the docs (and the errors) spell it.
    pub fn name(self) -> &'static str {
        match self {
            Flag::Cost => "COST",
            Flag::Peek => "PEEK",
            Flag::MaxWait => "MAXWAIT",
            Flag::Approx => "APPROX",
            Flag::Costs => "COSTS",
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
pub fn syntax_near(token: &[u8], why: &str) -> Failure {
    Failure::Syntax(format!("ERR syntax error near '{}'{why}", printable(token)))
}

/// The options of a call as the contract reads them.
pub struct Options {
    pub cost: u64,
    pub peek: bool,
    pub max_wait: u64,
    pub approx: bool,
    /// `COSTS` was given: one cost per key.
    pub costs: Option<Vec<u64>>,
}

impl Oracle {
    pub fn hard(&mut self, failure: Failure) {
        self.failures.push(failure);
        self.hard = true;
    }

    pub fn soft(&mut self, failure: Failure) {
        self.failures.push(failure);
    }

    /// An integer argument of at least `min` (0 or 1).
    pub fn number(&mut self, name: &'static str, raw: &[u8], min: u64) -> Option<u64> {
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
    pub fn at_most(&mut self, name: &'static str, value: Option<u64>, most: u64) {
        if value.is_some_and(|n| n > most) {
            self.hard(Failure::Bound(name, most));
        }
    }

    /// The documented ranges of the policy `algorithm` takes, its numbers in
    /// [`policy_fields`] order (`None` where a number did not read).
    pub fn ranges(&mut self, algorithm: Algorithm, numbers: &[Option<u64>]) {
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
    pub fn throttle(
        &mut self,
        built: Result<Throttle, redlimit_core::ArgumentError>,
    ) -> Option<Throttle> {
        built
            .map_err(|e| self.hard(Failure::Exact(format!("ERR {e}"))))
            .ok()
    }

    /// A policy whose ranges [`Oracle::at_most`] checked already, built by the core: where
    /// those checks found nothing, the core must accept it too.
    pub fn ranged<P>(&mut self, built: Result<P, redlimit_core::ArgumentError>) -> Option<P> {
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
    pub fn options(&mut self, rest: &[Vec<u8>], accepted: &[Flag]) -> Options {
        self.options_for_keys(rest, accepted, 0)
    }

    /// [`options`](Self::options), where `COSTS` takes `keys` values and excludes `COST`.
    pub fn options_for_keys(
        &mut self,
        rest: &[Vec<u8>],
        accepted: &[Flag],
        keys: usize,
    ) -> Options {
        let mut options = Options {
            cost: 1,
            peek: false,
            max_wait: 0,
            approx: false,
            costs: None,
        };
        let mut read_all = true;
        let mut seen = Vec::new();
        let mut rest = rest.iter();
        while let Some(word) = rest.next() {
            let Some(flag) = accepted
                .iter()
                .copied()
                .find(|f| word.eq_ignore_ascii_case(f.keyword()))
            else {
                self.hard(syntax_near(word, ""));
                read_all = false;
                break;
            };
            if seen.contains(&flag) {
                self.hard(Failure::Syntax(format!(
                    "ERR syntax error: {} given twice",
                    flag.name()
                )));
                read_all = false;
                break;
            }
            seen.push(flag);
            if flag == Flag::Costs {
                let mut costs = Vec::new();
                while costs.len() < keys {
                    let Some(value) = rest.next() else {
                        self.hard(Failure::Syntax(format!(
                            "ERR syntax error: COSTS needs one cost per key ({keys} keys, {} costs)",
                            costs.len()
                        )));
                        break;
                    };
                    match self.number("COSTS", value, 0) {
                        Some(n) if n > MAX_COUNT => {
                            self.hard(Failure::Bound("COSTS", MAX_COUNT));
                            break;
                        }
                        Some(n) => costs.push(n),
                        None => break,
                    }
                }
                if costs.len() < keys {
                    read_all = false;
                    break;
                }
                options.costs = Some(costs);
                continue;
            }
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
                Flag::Costs => continue,
            };
            let Some(value) = rest.next() else {
                self.hard(Failure::Syntax(format!(
                    "ERR syntax error: {name} needs a value ({name} {value_name})"
                )));
                read_all = false;
                break;
            };
            match self.number(name, value, 0) {
                Some(n) => *slot = n,
                None => {
                    read_all = false;
                    break;
                }
            }
            // Counts are at most 2^62; the module refuses a larger COST as it reads it.
            if flag == Flag::Cost && options.cost > MAX_COUNT {
                self.hard(Failure::Bound("COST", MAX_COUNT));
                read_all = false;
                break;
            }
        }
        if read_all && seen.contains(&Flag::Cost) && seen.contains(&Flag::Costs) {
            self.hard(Failure::Syntax(
                "ERR syntax error: COST and COSTS together (COSTS gives each key its own cost)"
                    .to_owned(),
            ));
        }
        options
    }

    /// The key of a limiting command of `algorithm`.
    pub fn limiter_key(&mut self, keys: &Keyspace, key: &[u8], algorithm: Algorithm) {
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

    pub fn finish(self, success: Option<Success>) -> Expect {
        Expect {
            success: if self.hard { None } else { success },
            failures: self.failures,
            disagreement: self.disagreement,
        }
    }
}
