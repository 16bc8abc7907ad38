//! A refund while a token bucket holds a reservation that waits for *another* bucket of
//! its `RL.ALL`, on the server at fixed instants (`RL.REPLAY`), with hand-computed
//! numbers. Both buckets hold 10 tokens and refill one per second.
//!
//! - t0: call 1 takes 6 tokens of `a` and all 10 of `b`, at once.
//! - t0: call 2 reserves 4 of `a` and 5 of `b` (`MAXWAIT`): `b` has them at t0 + 5 s, so
//!   the call acts then and `a` is charged as of then (no token debt on `a`: 0 left now).
//! - t0 + 1 s: call 1 used nothing; its settle gives back 6 tokens of `a` `SINCE 1000`.
//!   `a` waits 4 s more for call 2: a bucket charged 0 by call 1 would have been full
//!   meanwhile, so 1 + 4 s of refill do not come back: 1 token does. 1 token left now
//!   (after a cost of 1, the reply); at t0 + 5 s, 6 (the provider's bucket charged the
//!   real costs holds 10 - 4 = 6 then too). Before the state kept the act time, the
//!   refund gave back 5 tokens and `a` held 10 at t0 + 5 s, with call 2's 4 counted.

use super::{calls::with_module, decision, servers};
use redlimit_test_support::set_clock_offset;
use std::time::{SystemTime, UNIX_EPOCH};

/// `RL.REPLAY micros <args>`: the command decided at `micros`.
fn at(micros: u64, args: &str) -> String {
    format!("RL.REPLAY {micros} {args}")
}

#[test]
fn a_refund_before_a_pending_act_time_gives_back_the_refund_less_the_refill_until_then() {
    const BUCKETS: &str = "2 {r}:a {r}:b TOKENBUCKET 10 1 1000 TOKENBUCKET 10 1 1000";
    const A: &str = "{r}:a 10 1 1000";
    for binary in servers() {
        let who = binary.name();
        let server = with_module(&binary).start();
        let con = &mut server.connection();
        set_clock_offset(con, 2 * 86_400_000);
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let t0 = real.as_micros() as u64 + 86_400_000_000;
        let call = |con: &mut redis::Connection, micros: u64, args: &str| {
            let reply: redis::Value = super::line(&at(micros, args))
                .query(con)
                .unwrap_or_else(|e| panic!("{who}: {args}: {e}"));
            reply
        };
        call(con, t0, &format!("RL.ALL {BUCKETS} COSTS 6 10"));
        let reserved: Vec<redis::Value> = redis::from_redis_value(&call(
            con,
            t0,
            &format!("RL.ALL {BUCKETS} COSTS 4 5 MAXWAIT 10000"),
        ))
        .unwrap();
        let on_a: Vec<i64> = redis::from_redis_value(&reserved[1]).unwrap();
        assert_eq!(on_a, [1, 10, 0, 5_000, 10_000], "{who}: call 2 on a");
        let settle = "RL.ADJUST {r}:a -6 TOKENBUCKET 10 1 1000 SINCE 1000";
        let refunded = decision(con, who, &at(t0 + 1_000_000, settle)).unwrap();
        assert_eq!(refunded, [1, 10, 1, 0, 9_000], "{who}: the settle's reply");
        let act = t0 + 5_000_000;
        let taken = decision(con, who, &at(act, &format!("RL.TOKENBUCKET {A} COST 7")));
        assert_eq!(taken.unwrap()[..3], [0, 10, 6], "{who}: 7 at the act time");
        let taken = decision(con, who, &at(act, &format!("RL.TOKENBUCKET {A} COST 6")));
        assert_eq!(taken.unwrap()[..3], [1, 10, 0], "{who}: 6 at the act time");
    }
}
