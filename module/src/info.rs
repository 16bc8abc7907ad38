//! `INFO redlimit`: calls, allowed and denied counts per command.
//!
//! Plain atomics: the INFO callback also runs inside the server's crash report.

use redis_module::raw;
use std::ffi::CStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one command.
pub struct Counters {
    name: &'static CStr,
    decides: bool,
    calls: AtomicU64,
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl Counters {
    const fn new(name: &'static CStr, decides: bool) -> Self {
        Self {
            name,
            decides,
            calls: AtomicU64::new(0),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        }
    }

    /// Counts one call, whatever its outcome.
    pub fn call(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one decision.
    pub fn decided(&self, allowed: bool) {
        let counter = if allowed { &self.allowed } else { &self.denied };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// `RL.TOKENBUCKET`.
pub static TOKENBUCKET: Counters = Counters::new(c"tokenbucket", true);
/// `RL.THROTTLE`.
pub static THROTTLE: Counters = Counters::new(c"throttle", true);
/// `RL.SLIDING`.
pub static SLIDING: Counters = Counters::new(c"sliding", true);
/// `RL.FIXED`.
pub static FIXED: Counters = Counters::new(c"fixed", true);
/// `RL.ALL` (the overall decision).
pub static ALL_OF: Counters = Counters::new(c"all", true);
/// `RL.ACQUIRE`.
pub static ACQUIRE: Counters = Counters::new(c"acquire", true);
/// `RL.RELEASE` (calls only).
pub static RELEASE: Counters = Counters::new(c"release", false);
/// `RL.RESET` (calls only).
pub static RESET: Counters = Counters::new(c"reset", false);
/// `RL.STATUS` (calls only).
pub static STATUS: Counters = Counters::new(c"status", false);
/// `RL.ADJUST` (calls only).
pub static ADJUST: Counters = Counters::new(c"adjust", false);
/// `RL.SETSTATE` (calls only).
pub static SETSTATE: Counters = Counters::new(c"setstate", false);
/// `RL.USAGE.ADD` (calls only).
pub static USAGE_ADD: Counters = Counters::new(c"usage_add", false);
/// `RL.USAGE` (calls only).
pub static USAGE: Counters = Counters::new(c"usage", false);

const ALL: [&Counters; 13] = [
    &TOKENBUCKET,
    &THROTTLE,
    &SLIDING,
    &FIXED,
    &ALL_OF,
    &ACQUIRE,
    &RELEASE,
    &RESET,
    &STATUS,
    &ADJUST,
    &SETSTATE,
    &USAGE_ADD,
    &USAGE,
];

/// The server's INFO callback: one section named after the module.
pub extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: std::ffi::c_int) {
    crate::guard::guard((), || add_sections(ctx));
}

fn add_sections(ctx: *mut raw::RedisModuleInfoCtx) {
    // SAFETY: API pointers are set at load; `ctx` is the INFO context the server passed.
    let (Some(section), Some(field)) = (unsafe { raw::RedisModule_InfoAddSection }, unsafe {
        raw::RedisModule_InfoAddFieldULongLong
    }) else {
        return;
    };
    // SAFETY: an empty name makes the section the module's own (`INFO redlimit`).
    unsafe { section(ctx, c"".as_ptr()) };
    // SAFETY: a NUL-terminated field name.
    unsafe {
        field(
            ctx,
            c"propagation".as_ptr(),
            u64::from(crate::propagation::needed()),
        );
    };
    let mut name = [0u8; 64];
    for counters in ALL {
        let fields = [
            ("calls", &counters.calls),
            ("allowed", &counters.allowed),
            ("denied", &counters.denied),
        ];
        let shown = if counters.decides {
            &fields[..]
        } else {
            &fields[..1]
        };
        for (suffix, value) in shown {
            if let Some(field_name) = field_name(&mut name, counters.name, suffix) {
                // SAFETY: a NUL-terminated field name in a stack buffer.
                unsafe { field(ctx, field_name.as_ptr(), value.load(Ordering::Relaxed)) };
            }
        }
    }
}

/// `<command>_<suffix>` in `buffer`, NUL-terminated, without allocating.
fn field_name<'a>(buffer: &'a mut [u8; 64], command: &CStr, suffix: &str) -> Option<&'a CStr> {
    let parts = [command.to_bytes(), b"_", suffix.as_bytes(), b"\0"];
    let mut len = 0;
    for part in parts {
        buffer.get_mut(len..len + part.len())?.copy_from_slice(part);
        len += part.len();
    }
    CStr::from_bytes_with_nul(buffer.get(..len)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_join_command_and_counter() {
        let mut buffer = [0u8; 64];
        assert_eq!(
            field_name(&mut buffer, c"tokenbucket", "denied"),
            Some(c"tokenbucket_denied")
        );
    }
}
