//! `redlimit.clock-offset-ms`, registered by hand so that every way of setting it is
//! range-checked alike: the module argument (`--loadmodule libredlimit.so
//! clock-offset-ms N`), a `redlimit.clock-offset-ms` line in the config file,
//! `MODULE LOADEX … CONFIG redlimit.clock-offset-ms N`, and `CONFIG SET`.
//!
//! An out-of-range or malformed value refuses the load (with a log line naming it) or the
//! `CONFIG SET`; it never applies silently.

use crate::clock::{CLOCK_OFFSET_MS, MAX_CLOCK_OFFSET_MS};
use crate::guard::guard;
use redis_module::raw;
use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::sync::atomic::Ordering;

/// The config's name after the module's `redlimit.` prefix, as a module argument takes it.
pub const CLOCK_OFFSET: &str = "clock-offset-ms";

/// Why the module refuses to load.
pub fn range_message(value: &str) -> String {
    format!(
        "{CLOCK_OFFSET} must be an integer from 0 to {MAX_CLOCK_OFFSET_MS} (milliseconds), got '{value}'"
    )
}

/// The clock offset the module arguments ask for, or why they are refused.
///
/// Arguments come in `name value` pairs; the only name is `clock-offset-ms` (any case).
/// Anything else — an unknown name, a missing value, a repeated name, a value that is
/// not an integer in range — is an error naming it.
pub fn offset_from_args(args: &[&[u8]]) -> Result<Option<i64>, String> {
    let mut offset = None;
    let mut pairs = args.chunks(2);
    for pair in pairs.by_ref() {
        let (name, value) = match pair {
            [name, value] => (*name, *value),
            [name] => {
                return Err(format!(
                    "module argument '{}' has no value",
                    String::from_utf8_lossy(name)
                ));
            }
            _ => continue,
        };
        if !name.eq_ignore_ascii_case(CLOCK_OFFSET.as_bytes()) {
            return Err(format!(
                "unknown module argument '{}' (the only one is {CLOCK_OFFSET})",
                String::from_utf8_lossy(name)
            ));
        }
        if offset.is_some() {
            return Err(format!("module argument {CLOCK_OFFSET} given twice"));
        }
        offset = Some(parse_offset(value)?);
    }
    Ok(offset)
}

/// A strict base-10 offset within range.
pub fn parse_offset(value: &[u8]) -> Result<i64, String> {
    let text = String::from_utf8_lossy(value);
    let digits_only = !value.is_empty() && value.iter().all(u8::is_ascii_digit);
    text.parse::<i64>()
        .ok()
        .filter(|offset| digits_only && in_range(*offset))
        .ok_or_else(|| range_message(&text))
}

fn in_range(offset: i64) -> bool {
    (0..=MAX_CLOCK_OFFSET_MS).contains(&offset)
}

/// Registers the config with `initial` as its default, then lets the server apply what
/// the config file or `MODULE LOADEX … CONFIG` says; a refused value fails the load.
pub fn register(ctx: *mut raw::RedisModuleCtx, initial: i64) -> Result<(), String> {
    CLOCK_OFFSET_MS.store(initial, Ordering::Relaxed);
    // SAFETY: the API table is filled in before OnLoad's own code runs.
    let (Some(register), load) = (unsafe { raw::RedisModule_RegisterNumericConfig }, unsafe {
        raw::RedisModule_LoadConfigs
    }) else {
        // Servers before 7.0 have no module configs; the module argument still applies.
        return Ok(());
    };
    // SAFETY: the load context, a NUL-terminated name, callbacks that live as long as the
    // module, and no private data.
    let status = unsafe {
        register(
            ctx,
            c"clock-offset-ms".as_ptr(),
            initial,
            raw::REDISMODULE_CONFIG_DEFAULT,
            0,
            MAX_CLOCK_OFFSET_MS,
            Some(get_offset),
            Some(set_offset),
            None,
            std::ptr::null_mut(),
        )
    };
    if status != raw::REDISMODULE_OK as c_int {
        return Err(format!(
            "cannot register the config redlimit.{CLOCK_OFFSET}"
        ));
    }
    let Some(load) = load else {
        return Ok(());
    };
    // SAFETY: the load context, after every config is registered.
    if unsafe { load(ctx) } != raw::REDISMODULE_OK as c_int {
        return Err(format!(
            "the server refused a value of redlimit.{CLOCK_OFFSET} given in its config or \
             MODULE LOADEX (it must be an integer from 0 to {MAX_CLOCK_OFFSET_MS})"
        ));
    }
    Ok(())
}

extern "C" fn get_offset(_name: *const c_char, _privdata: *mut c_void) -> c_longlong {
    guard(0, || CLOCK_OFFSET_MS.load(Ordering::Relaxed))
}

extern "C" fn set_offset(
    _name: *const c_char,
    value: c_longlong,
    _privdata: *mut c_void,
    err: *mut *mut raw::RedisModuleString,
) -> c_int {
    guard(raw::REDISMODULE_ERR as c_int, || {
        if in_range(value) {
            CLOCK_OFFSET_MS.store(value, Ordering::Relaxed);
            return raw::REDISMODULE_OK as c_int;
        }
        set_error(err, &range_message(&value.to_string()));
        raw::REDISMODULE_ERR as c_int
    })
}

/// Hands the server the text of a refused value (it frees the string).
fn set_error(err: *mut *mut raw::RedisModuleString, message: &str) {
    // SAFETY: the API table is filled in at load.
    let Some(create) = (unsafe { raw::RedisModule_CreateString }) else {
        return;
    };
    if err.is_null() {
        return;
    }
    // SAFETY: a null context creates an unowned string the server takes over through `err`.
    unsafe {
        *err = create(std::ptr::null_mut(), message.as_ptr().cast(), message.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_argument_is_range_checked() {
        assert_eq!(offset_from_args(&[]), Ok(None));
        assert_eq!(offset_from_args(&[b"clock-offset-ms", b"0"]), Ok(Some(0)));
        assert_eq!(
            offset_from_args(&[b"CLOCK-OFFSET-MS", b"10000000000000"]),
            Ok(Some(MAX_CLOCK_OFFSET_MS))
        );
        for bad in [
            &b"-3600000"[..],
            b"-5",
            b"100000000000000",
            b"10000000000001",
            b"1.5",
            b"",
            b"+1",
            b"99999999999999999999999",
        ] {
            assert_eq!(
                offset_from_args(&[b"clock-offset-ms", bad]),
                Err(range_message(&String::from_utf8_lossy(bad))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn unknown_incomplete_or_repeated_arguments_are_refused() {
        let refused = |args: &[&[u8]]| offset_from_args(args).err().unwrap_or_default();
        assert_eq!(
            refused(&[b"clock-ofset-ms", b"5"]),
            "unknown module argument 'clock-ofset-ms' (the only one is clock-offset-ms)"
        );
        assert_eq!(
            refused(&[b"clock-offset-ms"]),
            "module argument 'clock-offset-ms' has no value"
        );
        assert_eq!(
            refused(&[b"clock-offset-ms", b"1", b"clock-offset-ms", b"2"]),
            "module argument clock-offset-ms given twice"
        );
    }
}
