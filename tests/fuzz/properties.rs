//! The properties, per server: each runs on one server started once.

use std::cell::RefCell;
use std::fmt;
use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use redlimit_test_support::{Flavor, available_servers};

use crate::invariants::scenarios;
use crate::settings::{cases, runner};
use crate::states::state_cases;
use crate::strategies::calls::call;
use crate::strategies::limiters::steps;
use crate::target::Target;

/// Runs `test` on `cases` generated values and prints how long it took.
fn property<S>(
    target: &mut Target,
    name: &str,
    cases: u32,
    salt: u64,
    strategy: S,
    test: impl Fn(&mut Target, S::Value) -> Result<(), String>,
) where
    S: Strategy,
    S::Value: fmt::Debug,
{
    let started = Instant::now();
    let sent = target.sent;
    let flavor = target.flavor.name();
    let cell = RefCell::new(target);
    let result = runner(cases, salt).run(&strategy, |value| {
        let mut target = cell.borrow_mut();
        test(&mut target, value).map_err(TestCaseError::fail)
    });
    let target = cell.into_inner();
    if let Err(error) = result {
        panic!("{flavor}: property {name} failed: {error}");
    }
    println!(
        "{flavor}: {name}: {cases} cases, {} commands, {:.1?}",
        target.sent - sent,
        started.elapsed()
    );
}

pub fn fuzz(flavor: Flavor) {
    let Some(binary) = available_servers().into_iter().find(|b| b.flavor == flavor) else {
        eprintln!(
            "skipped: {} is not installed (scripts/install-deps.sh)",
            flavor.name()
        );
        return;
    };
    let started = Instant::now();
    let mut target = Target::start(&binary);
    let cases = cases();
    let quarter = (cases / 4).max(1);
    property(&mut target, "arguments", cases, 1, steps(), |t, steps| {
        t.plain_batch(&steps)
    });
    property(
        &mut target,
        "transactions",
        quarter,
        2,
        (vec(call(), 1..=12), any::<bool>()),
        |t, (calls, resp3)| t.transaction_batch(&calls, resp3),
    );
    property(
        &mut target,
        "scripts",
        quarter,
        3,
        (vec(call(), 1..=12), any::<bool>(), any::<bool>()),
        |t, (calls, resp3, setresp3)| t.script_batch(&calls, resp3, resp3 && setresp3),
    );
    property(&mut target, "states", cases, 4, state_cases(), |t, case| {
        t.state_case(&case)
    });
    property(
        &mut target,
        "invariants",
        cases / 2 + 1,
        5,
        scenarios(),
        |t, scenario| t.scenario(&scenario),
    );
    target.move_clock(0).expect("resetting the clock");
    target.check_log();
    println!(
        "{}: {} commands in {:.1?}; replies to random calls:\n{}",
        flavor.name(),
        target.sent,
        started.elapsed(),
        target.outcomes()
    );
}
