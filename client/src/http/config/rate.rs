//! Rate strings, as users of `limits` and Flask-Limiter write them: `"100/hour"`,
//! `"5 per minute"`, `"10/second burst 20"`, `"1 per 2 minutes"`; several at once
//! separated by `;` (`"5/minute; 100/hour"`).
//!
//! Mapping to the algorithms (also in `docs/middleware.md`), for `N/P burst B`:
//!
//! | algorithm | numbers |
//! |---|---|
//! | none given, no `burst` | `sliding`: `limit = N`, `window_ms = P` |
//! | none given, `burst B` | `token_bucket`: `capacity = B`, `refill_tokens = N`, `refill_ms = P` |
//! | `token_bucket` | `capacity = B` (else `N`), `refill_tokens = N`, `refill_ms = P` |
//! | `sliding`, `sliding_approx`, `fixed` | `limit = N`, `window_ms = P` (no `burst`) |
//! | `throttle` | `max_burst = B - 1` (else `N - 1`), `count_per_period = N`, `period_s = P / 1000` (whole seconds) |

use crate::Policy;

/// One parsed rate: `count` per `period_ms`, optionally a `burst`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) count: u64,
    pub(crate) period_ms: u64,
    pub(crate) burst: Option<u64>,
}

impl Rate {
    /// Parses one rate (no `;`).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{text}` is not a rate ({why}); write `N/unit`, `N per [M] unit` or `N/unit burst B` \
                 with unit ms, second, minute, hour or day"
            )
        };
        let lower = text.trim().to_ascii_lowercase();
        let (rate, burst) = match lower.split_once("burst") {
            Some((rate, burst)) => (rate, Some(burst)),
            None => (lower.as_str(), None),
        };
        let spaced = rate.replace('/', " / ");
        let mut tokens = spaced.split_whitespace();
        let count = tokens
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| bad("it must start with a whole number"))?;
        match tokens.next() {
            Some("/" | "per") => {}
            _ => return Err(bad("`/` or `per` must follow the number")),
        }
        let rest: String = tokens.collect::<Vec<_>>().join("");
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        let (times, unit) = rest.split_at(digits);
        let times = if times.is_empty() {
            1
        } else {
            times
                .parse::<u64>()
                .map_err(|_| bad("the period's number is too large"))?
        };
        let unit_ms = unit_ms(unit).ok_or_else(|| bad("unknown unit"))?;
        let period_ms = times
            .checked_mul(unit_ms)
            .ok_or_else(|| bad("the period is too long"))?;
        let burst = match burst {
            Some(burst) => Some(
                burst
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| bad("`burst` takes a whole number"))?,
            ),
            None => None,
        };
        Ok(Self {
            count,
            period_ms,
            burst,
        })
    }

    /// The default name of a limit given by this rate: `5/minute`, `10/30s`, `7/1500ms`.
    pub(crate) fn name(&self) -> String {
        let unit = [
            (86_400_000, "day", "d"),
            (3_600_000, "hour", "h"),
            (60_000, "minute", "m"),
            (1_000, "second", "s"),
        ]
        .into_iter()
        .find(|(ms, _, _)| self.period_ms % ms == 0);
        let period = match unit {
            Some((ms, name, _)) if self.period_ms == ms => name.to_owned(),
            Some((ms, _, short)) => format!("{}{short}", self.period_ms / ms),
            None => format!("{}ms", self.period_ms),
        };
        format!("{}/{period}", self.count)
    }

    /// The policy of `algorithm` (the default when `None`), with the mapping above. The
    /// error names the argument at fault (`burst`, `rate`, or the module's argument).
    pub(crate) fn policy(&self, algorithm: Option<&str>) -> Result<Policy, (&'static str, String)> {
        let module = |e: crate::ArgumentError| ("rate", e.to_string());
        let no_burst = |name: &str| {
            if self.burst.is_some() {
                Err((
                    "rate",
                    format!("`burst` applies to token_bucket and throttle, not {name}"),
                ))
            } else {
                Ok(())
            }
        };
        match algorithm {
            None if self.burst.is_none() => {
                Policy::sliding(self.count, self.period_ms).map_err(module)
            }
            None | Some("token_bucket") => {
                Policy::token_bucket(self.burst.unwrap_or(self.count), self.count, self.period_ms)
                    .map_err(module)
            }
            Some("throttle") => {
                if self.period_ms % 1_000 != 0 {
                    return Err((
                        "rate",
                        "throttle periods are whole seconds (RL.THROTTLE's period_s)".to_owned(),
                    ));
                }
                let burst = self.burst.unwrap_or(self.count);
                if burst == 0 {
                    return Err(("rate", "`burst` must be at least 1".to_owned()));
                }
                Policy::throttle(burst - 1, self.count, self.period_ms / 1_000).map_err(module)
            }
            Some(name @ "sliding") => {
                no_burst(name)?;
                Policy::sliding(self.count, self.period_ms).map_err(module)
            }
            Some(name @ "sliding_approx") => {
                no_burst(name)?;
                Policy::sliding_approx(self.count, self.period_ms).map_err(module)
            }
            Some(name @ "fixed") => {
                no_burst(name)?;
                Policy::fixed(self.count, self.period_ms).map_err(module)
            }
            Some(other) => Err(("algorithm", format!("`{other}` takes no rate"))),
        }
    }
}

fn unit_ms(unit: &str) -> Option<u64> {
    let unit = unit
        .strip_suffix('s')
        .filter(|u| u.len() > 1)
        .unwrap_or(unit);
    Some(match unit {
        "ms" | "millisecond" => 1,
        "s" | "sec" | "second" => 1_000,
        "m" | "min" | "minute" => 60_000,
        "h" | "hr" | "hour" => 3_600_000,
        "d" | "day" => 86_400_000,
        _ => return None,
    })
}

/// Several rates separated by `;` (empty parts are skipped).
pub(crate) fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        Rate::parse(text).unwrap()
    }

    #[test]
    fn the_usual_spellings_parse() {
        let per = |count, period_ms, burst| Rate {
            count,
            period_ms,
            burst,
        };
        assert_eq!(rate("100/hour"), per(100, 3_600_000, None));
        assert_eq!(rate("5 per minute"), per(5, 60_000, None));
        assert_eq!(rate("10/second burst 20"), per(10, 1_000, Some(20)));
        assert_eq!(rate("1 per 2 minutes"), per(1, 120_000, None));
        assert_eq!(rate("7/1500ms"), per(7, 1_500, None));
        assert_eq!(rate(" 3 / 30s "), per(3, 30_000, None));
        assert_eq!(rate("1000/Day"), per(1_000, 86_400_000, None));
        for bad in [
            "",
            "ten/second",
            "5 minute",
            "5/fortnight",
            "5/s burst x",
            "5/99999999999999999999d",
        ] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
        let rates: Vec<&str> = split("5/minute; 100/hour;").collect();
        assert_eq!(rates, ["5/minute", "100/hour"]);
    }

    #[test]
    fn names_are_short_and_canonical() {
        assert_eq!(rate("5 per minute").name(), "5/minute");
        assert_eq!(rate("10/30 seconds").name(), "10/30s");
        assert_eq!(rate("1/2h").name(), "1/2h");
        assert_eq!(rate("7/1500ms").name(), "7/1500ms");
    }

    #[test]
    fn each_algorithm_gets_the_documented_numbers() {
        let r = rate("10/second burst 20");
        assert_eq!(
            r.policy(None).unwrap(),
            Policy::token_bucket(20, 10, 1_000).unwrap()
        );
        assert_eq!(
            r.policy(Some("throttle")).unwrap(),
            Policy::throttle(19, 10, 1).unwrap()
        );
        assert!(r.policy(Some("fixed")).is_err());
        let r = rate("100/hour");
        assert_eq!(
            r.policy(None).unwrap(),
            Policy::sliding(100, 3_600_000).unwrap()
        );
        assert_eq!(
            r.policy(Some("token_bucket")).unwrap(),
            Policy::token_bucket(100, 100, 3_600_000).unwrap()
        );
        assert_eq!(
            r.policy(Some("sliding_approx")).unwrap(),
            Policy::sliding_approx(100, 3_600_000).unwrap()
        );
        assert_eq!(
            r.policy(Some("fixed")).unwrap(),
            Policy::fixed(100, 3_600_000).unwrap()
        );
        assert!(rate("5/1500ms").policy(Some("throttle")).is_err());
        assert!(rate("0/second").policy(None).is_err());
    }
}
