//! `RL.REPLAY micros command arg...`: how replicas and AOF replay re-run a call whose
//! resulting state is larger than the call itself (long sliding logs, many leases).
//!
//! The primary propagates, for every call that wrote, whichever is smaller: the new
//! states (`RL.SETSTATE`) or the call with the time it decided at (`RL.REPLAY`). The
//! algorithms are deterministic functions of (state, policy, request, time), so a replica
//! holding the same state reaches byte-identical states either way. Propagated bytes
//! then stay near the size of the call whatever a key holds.

use super::{lease, throttle, tokenbucket, usage, window};
use crate::args::integer;
use crate::clock;
use crate::error::CommandError;
use crate::ffi::{Ctx, RawString, bytes};

/// The commands `RL.REPLAY` may run, by name.
const REPLAYABLE: [(&[u8], super::Handler); 10] = [
    (b"rl.tokenbucket", tokenbucket::run),
    (b"rl.throttle", throttle::run),
    (b"rl.sliding", window::sliding),
    (b"rl.fixed", window::fixed),
    (b"rl.all", super::all::run),
    (b"rl.acquire", lease::acquire),
    (b"rl.release", lease::release),
    (b"rl.adjust", super::adjust::run),
    (b"rl.usage.add", usage::add),
    // A read: how tests ask at an exact time (it writes and propagates nothing).
    (b"rl.usage", usage::read),
];

/// Runs `RL.REPLAY`: the call in `argv[2..]` at the decision time `argv[1]`.
///
/// From the replication stream or the AOF the time is taken as it is. From any other
/// client it is capped at the server's own time: a replayed call can move the clock
/// back, which never grants more, but never forward.
pub fn run(ctx: Ctx, argv: &[RawString]) -> Result<(), CommandError> {
    if ctx.is_keys_position_request() {
        report_keys(ctx, argv);
        return Ok(());
    }
    let (Some(&micros), Some(call)) = (argv.get(1), argv.get(2..)) else {
        return Err(CommandError::Arity);
    };
    let Some(&name) = call.first() else {
        return Err(CommandError::Arity);
    };
    let handler = handler(bytes(name)).ok_or_else(|| {
        CommandError::Argument(format!(
            "command must be a redlimit decision command, not '{}'",
            crate::error::printable(bytes(name))
        ))
    })?;
    let mut micros = integer("micros", bytes(micros))?;
    if !ctx.is_replicated_or_loading() {
        micros = micros.min(clock::server_now(ctx).as_micros());
    }
    clock::replayed_at(micros, || handler(ctx, call))
}

fn handler(name: &[u8]) -> Option<super::Handler> {
    REPLAYABLE
        .iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known))
        .map(|&(_, handler)| handler)
}

/// Reports the keys of the replayed call (`getkeys-api`), offset by two arguments.
fn report_keys(ctx: Ctx, argv: &[RawString]) {
    let Some(&name) = argv.get(2) else {
        return;
    };
    if bytes(name).eq_ignore_ascii_case(b"rl.all") {
        let Some(numkeys) = argv
            .get(3)
            .and_then(|&raw| integer("numkeys", bytes(raw)).ok())
            .and_then(|n| usize::try_from(n).ok())
        else {
            return;
        };
        for pos in (4..argv.len()).take(numkeys) {
            ctx.key_at_pos(pos);
        }
    } else if argv.len() > 3 {
        ctx.key_at_pos(3);
    }
}
