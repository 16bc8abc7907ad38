//! The oracle, written from `shared/spec/commands.md` and `docs/commands.md`: the replies
//! the contract allows for a call (`expect`, reading the arguments as the contract does),
//! and the checks of a reply against them (`check`, `replies`, `policies`).

pub mod check;
pub mod expect;
pub mod policies;
pub mod reading;
pub mod replies;

use redlimit_core::Algorithm;

use crate::commands::Command;
use crate::keyspace::KeyState;

/// An error reply the contract allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
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
    pub fn matches(&self, text: &str, command: Command, script: bool) -> bool {
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
pub struct Rule {
    pub algorithm: Algorithm,
    pub limit: u64,
    /// The request can never succeed (cost above what the policy can ever grant).
    pub never: bool,
    pub max_wait: u64,
    /// An allowed request changes the state (not a PEEK, not a zero cost).
    pub writes: bool,
    /// The largest `remaining`: the limit, except for throttles (see
    /// [`throttle_most_remaining`]).
    pub most_remaining: u64,
}

impl Rule {
    /// A request of `cost` under a plain `limit` (windows, buckets without MAXWAIT).
    pub fn simple(algorithm: Algorithm, limit: u64, cost: u64, peek: bool) -> Self {
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
pub fn throttle_most_remaining(max_burst: u64, count: u64, period_s: u64) -> u64 {
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
pub enum Success {
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
pub struct Expect {
    pub failures: Vec<Failure>,
    pub success: Option<Success>,
    /// The core refuses a policy the documented ranges allow: whatever the module answers,
    /// the call fails the property.
    pub disagreement: Option<String>,
}
