//! The `Adjust` family's calls: decisions and `RL.ADJUST` refunds and charges.

use super::Timeline;
use redis::Cmd;

impl Timeline {
    /// A decision or an `RL.ADJUST` on key `k` of the `Adjust` family.
    pub(super) fn adjust_step(&mut self, k: usize) -> Cmd {
        let key = format!("{{diff:adjust}}:{k}");
        let (p, kind) = (self.policies[k].clone(), self.kinds[k]);
        let r = &mut self.rng;
        let large = kind == "TOKENBUCKET-LARGE";
        let policy = |cmd: &mut Cmd| match kind {
            "TOKENBUCKET" | "TOKENBUCKET-LARGE" => {
                cmd.arg("TOKENBUCKET").arg(p[0]).arg(p[1]).arg(p[2]);
            }
            "APPROX" => {
                cmd.arg("SLIDING").arg(p[0]).arg(p[1]).arg("APPROX");
            }
            kind => {
                cmd.arg(kind).arg(&p[..]);
            }
        };
        if r.chance(50) {
            let cost = if large {
                r.pick(&[0, 1, 1_000, 999_999])
            } else {
                r.pick(&[0, 1, 1, 2, 3, 5, 25])
            };
            let mut cmd = match kind {
                "THROTTLE" => {
                    let mut cmd = redis::cmd("RL.THROTTLE");
                    cmd.arg(&key).arg(&p[..]).arg(cost);
                    return cmd;
                }
                "TOKENBUCKET" | "TOKENBUCKET-LARGE" => {
                    let mut cmd = redis::cmd("RL.TOKENBUCKET");
                    cmd.arg(&key).arg(p[0]).arg(p[1]).arg(p[2]);
                    if !large && r.chance(30) {
                        // Reservations leave a debt, where refunds are dropped.
                        cmd.arg("MAXWAIT").arg(r.pick(&[50, 3_000, 100_000]));
                    }
                    cmd
                }
                window => {
                    let mut cmd = redis::cmd(if window == "FIXED" {
                        "RL.FIXED"
                    } else {
                        "RL.SLIDING"
                    });
                    cmd.arg(&key).arg(p[0]).arg(p[1]);
                    if window == "APPROX" {
                        cmd.arg("APPROX");
                    }
                    cmd
                }
            };
            cmd.arg("COST").arg(cost);
            return cmd;
        }
        let magnitude = match r.next() % 20 {
            0 => 1 << 62,
            1 => 1 << 55,
            2 if large => r.range(1, 2_000_000),
            _ => r.range(0, 30),
        };
        let delta = if r.chance(60) {
            -(magnitude as i128)
        } else {
            magnitude as i128
        };
        let mut cmd = redis::cmd("RL.ADJUST");
        cmd.arg(&key).arg(delta.to_string());
        let with_policy = r.chance(75);
        let since = r.chance(50).then(|| match r.next() % 4 {
            0 => 0,
            1 => r.range(1, 1_000),
            _ if large => r.range(1, 1_000),
            2 => r.range(1_000, 100_000),
            _ => r.range(100_000, 10_000_000),
        });
        let since_first = r.chance(30);
        if let (Some(ms), true) = (since, since_first) {
            cmd.arg("SINCE").arg(ms);
        }
        if with_policy {
            policy(&mut cmd);
        }
        if let (Some(ms), false) = (since, since_first) {
            cmd.arg("SINCE").arg(ms);
        }
        cmd
    }
}
