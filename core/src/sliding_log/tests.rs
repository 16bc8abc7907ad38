use super::*;
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;

struct Window {
    policy: SlidingWindow,
    log: Option<SlidingLog>,
}

impl Window {
    fn new(limit: u64, window_ms: u64) -> Self {
        Self {
            policy: SlidingWindow::new(limit, window_ms).unwrap(),
            log: None,
        }
    }

    fn take(&mut self, ms: u64, request: Request) -> Decision {
        let outcome = self.policy.decide(
            self.log.as_ref().map(|l| (&self.policy, l)),
            Timestamp::from_millis(T0 + ms),
            request,
        );
        if outcome.update.is_some() {
            self.log = outcome.update;
        }
        outcome.decision
    }
}

fn after_ms(ms: u64) -> RetryAfter {
    RetryAfter::After(Duration::from_millis(ms))
}

#[test]
fn a_request_is_counted_until_it_leaves_the_window() {
    let mut window = Window::new(3, 1_000);
    assert_eq!(window.take(0, Request::new(1)).remaining, 2);
    assert_eq!(window.take(300, Request::new(1)).remaining, 1);
    let last = window.take(600, Request::new(1));
    assert_eq!(last.remaining, 0);
    assert_eq!(last.reset_after, Duration::from_millis(1_000));
    let denied = window.take(700, Request::new(1));
    assert!(!denied.allowed);
    assert_eq!(
        denied.retry_after,
        after_ms(300),
        "the request at 0 leaves at 1000"
    );
    assert_eq!(denied.reset_after, Duration::from_millis(900));
    assert!(!window.take(999, Request::new(1)).allowed);
    assert!(window.take(1_000, Request::new(1)).allowed);
}

#[test]
fn retry_after_waits_for_enough_cost_to_leave() {
    let mut window = Window::new(5, 1_000);
    window.take(0, Request::new(2));
    window.take(100, Request::new(1));
    window.take(200, Request::new(2));
    // 5 used; a cost of 3 needs the entries of 0 (2) and 100 (1) gone: at 1100.
    assert_eq!(window.take(500, Request::new(3)).retry_after, after_ms(600));
    assert_eq!(
        window.take(500, Request::new(6)).retry_after,
        RetryAfter::Never
    );
}

#[test]
fn the_log_stays_compact() {
    let mut window = Window::new(100, 60_000);
    for i in 0..100 {
        assert!(window.take(i * 600, Request::new(1)).allowed);
    }
    let log = window.log.as_ref().unwrap();
    assert_eq!(log.total(), 100);
    assert!(log.entries().len() <= 300, "{} bytes", log.entries().len());
    assert_eq!(
        window.policy.idle_at(log),
        Timestamp::from_millis(T0 + 99 * 600 + 60_000)
    );
}

#[test]
fn a_clock_moving_back_records_at_the_newest_time() {
    let mut window = Window::new(2, 1_000);
    window.take(5_000, Request::new(1));
    assert!(window.take(4_000, Request::new(1)).allowed);
    assert_eq!(
        window.log.as_ref().unwrap().iter().collect::<Vec<_>>(),
        [(T0 + 5_000, 1), (T0 + 5_000, 1)]
    );
    assert!(!window.take(5_999, Request::new(1)).allowed);
}

#[test]
fn logs_parse_back_only_when_well_formed() {
    let mut window = Window::new(10, 1_000);
    window.take(0, Request::new(2));
    window.take(7, Request::new(3));
    let log = window.log.unwrap();
    let parsed = SlidingLog::from_parts(log.first_ms(), log.entries().to_vec()).unwrap();
    assert_eq!(parsed, log);
    assert!(
        SlidingLog::from_parts(0, vec![1, 1]).is_err(),
        "first delta must be 0"
    );
    assert!(SlidingLog::from_parts(0, vec![0, 0]).is_err(), "zero cost");
    assert!(SlidingLog::from_parts(0, vec![0]).is_err(), "truncated");
    assert!(
        SlidingLog::from_parts(u64::MAX, vec![0, 1, 1, 1]).is_err(),
        "time overflow"
    );
}

/// The definition: the costs admitted in `(t - window, t]`.
fn admitted_in_window(admitted: &[(u64, u64)], t: u64, window: u64) -> u64 {
    admitted
        .iter()
        .filter(|(at, _)| *at <= t && at + window > t)
        .map(|(_, cost)| cost)
        .sum()
}

proptest! {
    #[test]
    fn decisions_equal_the_definition(
        limit in 1u64..12,
        window_ms in 1u64..3_000,
        steps in proptest::collection::vec((0u64..1_500, 0u64..5, any::<bool>()), 1..120),
    ) {
        let mut window = Window::new(limit, window_ms);
        let (mut now, mut admitted) = (0u64, Vec::new());
        for (advance, cost, peek) in steps {
            now += advance;
            let d = window.take(now, Request { peek, ..Request::new(cost) });
            let used = admitted_in_window(&admitted, T0 + now, window_ms);
            prop_assert_eq!(d.allowed, used + cost <= limit);
            if d.allowed {
                if !peek && cost > 0 {
                    admitted.push((T0 + now, cost));
                }
                prop_assert_eq!(d.remaining, limit - used - cost);
            } else if cost <= limit {
                // Exact retry: denied one millisecond before, allowed at the instant.
                let RetryAfter::After(wait) = d.retry_after else { panic!("{:?}", d.retry_after) };
                let wait = wait.as_millis() as u64;
                prop_assert!(wait >= 1);
                prop_assert!(admitted_in_window(&admitted, T0 + now + wait - 1, window_ms) + cost > limit);
                prop_assert!(admitted_in_window(&admitted, T0 + now + wait, window_ms) + cost <= limit);
            } else {
                prop_assert_eq!(d.retry_after, RetryAfter::Never);
            }
            // Never more than `limit` in any window ending at an admitted instant.
            for &(at, _) in &admitted {
                prop_assert!(admitted_in_window(&admitted, at, window_ms) <= limit);
            }
        }
    }
}
