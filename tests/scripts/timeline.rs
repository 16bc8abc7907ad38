//! Random timelines of `RL.*` calls for the differential test: a few keys per
//! algorithm, policies that change now and then (tier changes), costs, peeks, waits,
//! time that stands still, creeps, jumps past windows and now and then steps back.

use redis::Cmd;

#[path = "adjust_step.rs"]
mod adjust_step;

/// splitmix64: small, seedable, good enough to pick test cases.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// The command families compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    TokenBucket,
    Throttle,
    Fixed,
    Sliding,
    Approx,
    Leases,
    All,
    /// Token buckets with large numbers near the scripts' bounds (exactness of the
    /// rescaling, of refills over long gaps).
    TokenBucketLarge,
    /// Approximate windows with large limits and windows.
    ApproxLarge,
    /// `RL.ADJUST` refunds and charges (with and without a policy, with and without
    /// `SINCE`) between decisions, on every algorithm it takes.
    Adjust,
    /// `RL.ALL ... MAXWAIT` reservations across token buckets (costs per key, keys
    /// named twice, costs above a capacity), with refunds as a cancelled admission or a
    /// settle makes (with and without `SINCE`), extra charges, and single-bucket
    /// decisions and peeks on the same keys while reservations are pending.
    Reserve,
    /// `RL.USAGE.ADD` and `RL.USAGE` on usage counters (tiny to day-long buckets, rings
    /// of 1 to 1,440, a clock that steps back).
    Usage,
}

impl Family {
    pub const ALL: [Family; 12] = [
        Family::TokenBucket,
        Family::TokenBucketLarge,
        Family::ApproxLarge,
        Family::Throttle,
        Family::Fixed,
        Family::Sliding,
        Family::Approx,
        Family::Leases,
        Family::All,
        Family::Adjust,
        Family::Reserve,
        Family::Usage,
    ];
}

/// One call at one instant.
pub struct Step {
    pub at_us: u64,
    pub cmd: Cmd,
}

pub struct Timeline {
    family: Family,
    rng: Rng,
    now_us: u64,
    /// Per key, the policy numbers it is called with (changed now and then).
    policies: Vec<Vec<u64>>,
    /// Per key of `All` and `Adjust`, its algorithm.
    kinds: Vec<&'static str>,
}

const KEYS: usize = 4;

impl Timeline {
    pub fn new(family: Family, mut rng: Rng, start_us: u64) -> Self {
        let kinds = (0..KEYS)
            .map(|_| match family {
                Family::Adjust => rng.pick(&[
                    "TOKENBUCKET",
                    "TOKENBUCKET-LARGE",
                    "THROTTLE",
                    "FIXED",
                    "SLIDING",
                    "APPROX",
                ]),
                Family::Reserve => "TOKENBUCKET",
                _ => rng.pick(&["TOKENBUCKET", "FIXED", "SLIDING", "APPROX"]),
            })
            .collect::<Vec<_>>();
        let mut timeline = Self {
            family,
            rng,
            now_us: start_us,
            policies: Vec::new(),
            kinds,
        };
        timeline.policies = (0..KEYS).map(|k| timeline.policy(k)).collect();
        timeline
    }

    /// Random policy numbers for key `k`.
    fn policy(&mut self, k: usize) -> Vec<u64> {
        let r = &mut self.rng;
        let any = r.range(1, 5_000);
        let kind = match self.family {
            Family::All | Family::Adjust | Family::Reserve => self.kinds[k],
            Family::TokenBucket => "TOKENBUCKET",
            Family::TokenBucketLarge => "TOKENBUCKET-LARGE",
            Family::ApproxLarge => "APPROX-LARGE",
            Family::Fixed => "FIXED",
            Family::Sliding => "SLIDING",
            Family::Approx => "APPROX",
            Family::Throttle => "THROTTLE",
            Family::Leases => "LEASES",
            Family::Usage => "USAGE",
        };
        match kind {
            "TOKENBUCKET" => vec![
                r.range(1, 20),
                r.range(1, 5),
                r.pick(&[1, 7, 100, 1_000, any]),
            ],
            // capacity * refill_ms stays under the scripts' 2^52 / 1000.
            "TOKENBUCKET-LARGE" => vec![
                r.range(1, 1_000_000),
                r.range(1, 1_000_000_000),
                r.range(1, 4_000_000),
            ],
            // limit * window_ms stays under 2^51.
            "APPROX-LARGE" => vec![r.range(1, 1_000_000), r.range(1, 1_000_000_000)],
            "THROTTLE" => vec![r.range(0, 10), r.range(1, 50), r.pick(&[1, 3, 60])],
            "LEASES" => vec![r.range(1, 5), r.range(1, 5_000)],
            "USAGE" => {
                let buckets = r.range(1, 1_440);
                vec![
                    r.pick(&[1, 10, 1_000, 3_600_000, any]),
                    r.pick(&[1, 3, 24, buckets]),
                ]
            }
            "FIXED" | "SLIDING" => vec![r.range(1, 20), r.pick(&[1, 10, 1_000, any])],
            _ => vec![r.range(1, 50), r.pick(&[1, 10, 1_000, any])],
        }
    }

    fn advance(&mut self) {
        let r = &mut self.rng;
        let step = match r.next() % 100 {
            0..=24 => 0,
            25..=59 => r.range(1, 999),
            60..=89 => r.range(1_000, 500_000),
            90..=97 => r.range(500_000, 10_000_000),
            _ => {
                // The clock steps back a little (an NTP step, a failover).
                self.now_us -= r.range(1, 50_000);
                return;
            }
        };
        self.now_us += step;
    }

    pub fn step(&mut self) -> Step {
        self.advance();
        let k = (self.rng.next() % KEYS as u64) as usize;
        // A usage key keeps its shape (another one is refused, on both engines alike).
        if self.rng.chance(3) && self.family != Family::Usage {
            self.policies[k] = self.policy(k);
        }
        if self.family == Family::Adjust {
            let cmd = self.adjust_step(k);
            return Step {
                at_us: self.now_us,
                cmd,
            };
        }
        let key = format!("{{diff:{:?}}}:{k}", self.family);
        let p = self.policies[k].clone();
        let r = &mut self.rng;
        let cost = match self.family {
            Family::TokenBucketLarge | Family::ApproxLarge => {
                let any = r.range(1, 2_000_000);
                r.pick(&[0, 1, 1, 1_000, any, 999_999_999])
            }
            _ => r.pick(&[0, 1, 1, 1, 1, 2, 3, 5, 25]),
        };
        let peek = r.chance(10);
        let mut cmd;
        match self.family {
            Family::Adjust => unreachable!("adjust_step builds the Adjust family's calls"),
            Family::TokenBucket | Family::TokenBucketLarge => {
                cmd = redis::cmd("RL.TOKENBUCKET");
                cmd.arg(&key).arg(p[0]).arg(p[1]).arg(p[2]);
                options(&mut cmd, cost, peek);
                let max_wait = r.pick(&[1, 50, 999, 3_000, 1_000_000]);
                // Within the scripts' bound (beyond it they borrow less, documented).
                let borrowing = p[0] * p[2] * 1_000 + max_wait * 1_000 * p[1];
                if r.chance(30) && borrowing <= 1 << 52 {
                    cmd.arg("MAXWAIT").arg(max_wait);
                }
            }
            Family::Throttle => {
                cmd = redis::cmd("RL.THROTTLE");
                cmd.arg(&key).arg(p[0]).arg(p[1]).arg(p[2]);
                if cost != 1 || r.chance(50) {
                    cmd.arg(cost);
                }
            }
            Family::Fixed | Family::Sliding | Family::Approx | Family::ApproxLarge => {
                cmd = redis::cmd(if self.family == Family::Fixed {
                    "RL.FIXED"
                } else {
                    "RL.SLIDING"
                });
                cmd.arg(&key).arg(p[0]).arg(p[1]);
                options(&mut cmd, cost, peek);
                if matches!(self.family, Family::Approx | Family::ApproxLarge) {
                    cmd.arg("APPROX");
                }
            }
            Family::Leases => {
                let id = format!("job-{}", r.range(0, 6));
                if r.chance(30) {
                    cmd = redis::cmd("RL.RELEASE");
                    cmd.arg(&key).arg(id);
                } else {
                    cmd = redis::cmd("RL.ACQUIRE");
                    cmd.arg(&key).arg(p[0]).arg(p[1]).arg(id);
                }
            }
            Family::Usage if r.chance(20) => {
                cmd = redis::cmd("RL.USAGE");
                cmd.arg(&key);
            }
            Family::Usage => {
                cmd = redis::cmd("RL.USAGE.ADD");
                let amount = r.pick(&[0, 1, 1, 5, 100, 1_000_000_000]);
                cmd.arg(&key).arg(amount).arg(p[0]).arg(p[1]);
            }
            Family::Reserve if r.chance(25) => {
                // A cancelled admission gives its reservation back, a settle gives back
                // what a call did not use (SINCE its act time), or takes more: on buckets
                // that may hold reservations waiting for another bucket (anchored ahead).
                let delta = match r.next() % 10 {
                    0 => cost as i64,
                    1 => -(r.range(0, 400) as i64),
                    _ => -(cost as i64),
                };
                cmd = redis::cmd("RL.ADJUST");
                cmd.arg(format!("{{diff:reserve}}:{k}")).arg(delta);
                if r.chance(85) {
                    cmd.arg("TOKENBUCKET").arg(p[0]).arg(p[1]).arg(p[2]);
                }
                if r.chance(60) {
                    let (short, long) = (r.range(0, 5_000), r.range(5_000, 600_000));
                    cmd.arg("SINCE").arg(r.pick(&[0, 1, short, long]));
                }
            }
            Family::Reserve if r.chance(12) => {
                // One bucket alone (a peek now and then) while reservations may be pending.
                cmd = redis::cmd("RL.TOKENBUCKET");
                cmd.arg(format!("{{diff:reserve}}:{k}"))
                    .arg(p[0])
                    .arg(p[1])
                    .arg(p[2]);
                options(&mut cmd, cost, r.chance(30));
                if r.chance(30) {
                    cmd.arg("MAXWAIT").arg(r.pick(&[50, 3_000, 60_000]));
                }
            }
            Family::All | Family::Reserve => {
                let n = r.range(1, 3) as usize;
                let picked: Vec<usize> =
                    (0..n).map(|_| (r.next() % KEYS as u64) as usize).collect();
                cmd = redis::cmd("RL.ALL");
                cmd.arg(n);
                let group = if self.family == Family::All {
                    "all"
                } else {
                    "reserve"
                };
                for &k in &picked {
                    cmd.arg(format!("{{diff:{group}}}:{k}"));
                }
                for &k in &picked {
                    let p = &self.policies[k];
                    match self.kinds[k] {
                        "TOKENBUCKET" => cmd.arg("TOKENBUCKET").arg(p[0]).arg(p[1]).arg(p[2]),
                        "APPROX" => cmd.arg("SLIDING").arg(p[0]).arg(p[1]).arg("APPROX"),
                        kind => cmd.arg(kind).arg(p[0]).arg(p[1]),
                    };
                }
                if r.chance(50) {
                    // A cost per key (0: only asks that limit), now and then all zero.
                    cmd.arg("COSTS");
                    for _ in 0..n {
                        cmd.arg(r.pick(&[0, 0, 1, 1, 2, 3, 7, 25]));
                    }
                    if peek {
                        cmd.arg("PEEK");
                    }
                } else {
                    options(&mut cmd, cost, peek);
                }
                if self.family == Family::Reserve && r.chance(85) {
                    cmd.arg("MAXWAIT")
                        .arg(r.pick(&[0, 1, 50, 999, 3_000, 60_000, 1_000_000]));
                }
            }
        }
        Step {
            at_us: self.now_us,
            cmd,
        }
    }
}

fn options(cmd: &mut Cmd, cost: u64, peek: bool) {
    if cost != 1 {
        cmd.arg("COST").arg(cost);
    }
    if peek {
        cmd.arg("PEEK");
    }
}

/// The command as text, for failure messages.
pub fn describe(cmd: &Cmd) -> String {
    cmd.args_iter()
        .filter_map(|arg| match arg {
            redis::Arg::Simple(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            redis::Arg::Cursor => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}
