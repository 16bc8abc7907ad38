//! The module-API floor: a module doing only what a limiter command must do through the
//! module API, and nothing of a limiter's own work (no algorithm, no policy, no clock
//! arithmetic beyond one addition). The server bench builds it (see `floor.rs`) and
//! loads it next to redlimit, so that every run shows how far each `RL.*` command is
//! from this line.
//!
//! `FLOOR.CALL key a b ttl_ms`, per call:
//!
//! 1. parses three integer arguments (`RedisModule_StringToLongLong`);
//! 2. opens the key for writing;
//! 3. reads or creates a module-type value, a fixed 24-byte buffer, and modifies it in
//!    place;
//! 4. reads the server clock once and sets the key's absolute expiry
//!    (`RedisModule_SetAbsExpire`, `ttl_ms` from now);
//! 5. replicates the 24-byte state (`RedisModule_Replicate` of `FLOOR.SET key <state>`);
//! 6. replies an array of 5 integers.
//!
//! Registered with the classic `redis_module!` macro, like redlimit, so it loads on
//! Redis 7.0; the commands are created with `RedisModule_CreateCommand` directly, as
//! redlimit's are (the SDK's command wrapper would add its own allocations).

use redis_module::native_types::RedisType;
use redis_module::{Context, RedisString, Status, raw};
use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

/// The bytes of one value.
const STATE_LEN: usize = 24;

/// One key's value.
type State = [u8; STATE_LEN];

/// The data type (its name: exactly 9 characters, unlike redlimit's).
static FLOOR_TYPE: RedisType = RedisType::new(
    "floorval0",
    0,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: None,
        mem_usage: None,
        digest: None,
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: None,
        copy2: None,
        aux_save2: None,
    },
);

/// The registered type handle.
static RAW_TYPE: AtomicPtr<raw::RedisModuleType> = AtomicPtr::new(std::ptr::null_mut());

/// Reads a module API function pointer (filled in when the module loads).
macro_rules! api {
    ($name:ident) => {
        // SAFETY: written once while the module loads, read-only afterwards.
        unsafe { raw::$name }
    };
}

unsafe extern "C" fn rdb_load(rdb: *mut raw::RedisModuleIO, _encver: c_int) -> *mut c_void {
    let Some(load) = api!(RedisModule_LoadStringBuffer) else {
        return std::ptr::null_mut();
    };
    let mut len = 0usize;
    // SAFETY: a valid RDB handle; the buffer is ours to free.
    let buffer = unsafe { load(rdb, &mut len) };
    if buffer.is_null() {
        return std::ptr::null_mut();
    }
    let mut state: Box<State> = Box::new([0; STATE_LEN]);
    // SAFETY: `buffer` holds `len` bytes.
    let bytes = unsafe { std::slice::from_raw_parts(buffer.cast::<u8>(), len) };
    let n = len.min(STATE_LEN);
    state[..n].copy_from_slice(&bytes[..n]);
    if let Some(free) = api!(RedisModule_Free) {
        // SAFETY: allocated by the server for us.
        unsafe { free(buffer.cast()) };
    }
    Box::into_raw(state).cast()
}

unsafe extern "C" fn rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    if let Some(save) = api!(RedisModule_SaveStringBuffer) {
        // SAFETY: `value` is one of our 24-byte states.
        unsafe { save(rdb, value.cast::<c_char>(), STATE_LEN) };
    }
}

unsafe extern "C" fn free(value: *mut c_void) {
    if !value.is_null() {
        // SAFETY: created by `Box::into_raw` in this module.
        drop(unsafe { Box::from_raw(value.cast::<State>()) });
    }
}

/// The server clock in milliseconds: cached per command where the server offers it
/// (Redis 7.2+, Valkey), as redlimit reads it.
fn now_ms() -> i64 {
    if let Some(cached) = api!(RedisModule_CachedMicroseconds) {
        // SAFETY: no arguments.
        return unsafe { cached() } / 1_000;
    }
    // SAFETY: no arguments.
    api!(RedisModule_Milliseconds).map_or(0, |ms| unsafe { ms() })
}

/// Replies an error and returns the command status.
fn error(ctx: *mut raw::RedisModuleCtx, message: &std::ffi::CStr) -> c_int {
    if let Some(reply) = api!(RedisModule_ReplyWithError) {
        // SAFETY: a valid command context and a NUL-terminated message.
        unsafe { reply(ctx, message.as_ptr()) };
    }
    raw::REDISMODULE_OK as c_int
}

/// Opens `key` for writing; returns its state, created if the key was empty.
///
/// # Safety
///
/// A valid command context and key name.
unsafe fn open_state(
    ctx: *mut raw::RedisModuleCtx,
    name: *mut raw::RedisModuleString,
) -> Result<(*mut raw::RedisModuleKey, *mut State), &'static std::ffi::CStr> {
    let (Some(open), Some(key_type), Some(get_type), Some(get_value), Some(set_value)) = (
        api!(RedisModule_OpenKey),
        api!(RedisModule_KeyType),
        api!(RedisModule_ModuleTypeGetType),
        api!(RedisModule_ModuleTypeGetValue),
        api!(RedisModule_ModuleTypeSetValue),
    ) else {
        return Err(c"ERR module API missing");
    };
    let mode = (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int;
    // SAFETY: per this function's contract.
    let key = unsafe { open(ctx, name, mode) };
    let ty = RAW_TYPE.load(Ordering::Relaxed);
    // SAFETY: an open key.
    let kind = unsafe { key_type(key) } as isize;
    if kind == raw::REDISMODULE_KEYTYPE_EMPTY {
        let state = Box::into_raw(Box::new([0u8; STATE_LEN]));
        // SAFETY: an open, writable, empty key; the key owns `state` from here on.
        unsafe { set_value(key, ty, state.cast()) };
        return Ok((key, state));
    }
    // SAFETY: an open key.
    if kind == raw::REDISMODULE_KEYTYPE_MODULE && unsafe { get_type(key) } == ty {
        // SAFETY: an open key holding one of our values.
        return Ok((key, unsafe { get_value(key) }.cast::<State>()));
    }
    if let Some(close) = api!(RedisModule_CloseKey) {
        // SAFETY: an open key.
        unsafe { close(key) };
    }
    Err(c"WRONGTYPE Operation against a key holding the wrong kind of value")
}

/// `FLOOR.CALL key a b ttl_ms`: see the crate documentation.
unsafe extern "C" fn floor_call(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    if argc != 5 {
        if let Some(arity) = api!(RedisModule_WrongArity) {
            // SAFETY: a valid command context.
            return unsafe { arity(ctx) };
        }
        return raw::REDISMODULE_OK as c_int;
    }
    // SAFETY: the server passes `argc` arguments.
    let args = unsafe { std::slice::from_raw_parts(argv, 5) };
    let Some(to_integer) = api!(RedisModule_StringToLongLong) else {
        return error(ctx, c"ERR module API missing");
    };
    let mut numbers: [c_longlong; 3] = [0; 3];
    for (number, arg) in numbers.iter_mut().zip(&args[2..]) {
        // SAFETY: a live argument.
        if unsafe { to_integer(*arg, number) } != raw::REDISMODULE_OK as c_int {
            return error(ctx, c"ERR value is not an integer or out of range");
        }
    }
    let [a, b, ttl_ms] = numbers;
    // SAFETY: a valid command context and a live argument.
    let (key, state) = match unsafe { open_state(ctx, args[1]) } {
        Ok(opened) => opened,
        Err(message) => return error(ctx, message),
    };
    // SAFETY: the key owns the state and is open for writing; no other reference.
    let state = unsafe { &mut *state };
    let now = now_ms();
    let expire_at = now.saturating_add(ttl_ms.max(1));
    let calls = i64::from_le_bytes(state[..8].try_into().unwrap_or_default()) + 1;
    state[..8].copy_from_slice(&calls.to_le_bytes());
    state[8..16].copy_from_slice(&a.wrapping_add(b).to_le_bytes());
    state[16..].copy_from_slice(&expire_at.to_le_bytes());
    if let Some(expire) = api!(RedisModule_SetAbsExpire) {
        // SAFETY: an open, writable key holding a value.
        unsafe { expire(key, expire_at) };
    }
    if let Some(replicate) = api!(RedisModule_Replicate) {
        // SAFETY: "sb" takes a module string, then a buffer pointer and its length.
        unsafe {
            replicate(
                ctx,
                c"FLOOR.SET".as_ptr(),
                c"sb".as_ptr(),
                args[1],
                state.as_ptr().cast::<c_char>(),
                STATE_LEN,
            )
        };
    }
    if let Some(close) = api!(RedisModule_CloseKey) {
        // SAFETY: an open key, not used afterwards.
        unsafe { close(key) };
    }
    if let (Some(array), Some(integer)) = (
        api!(RedisModule_ReplyWithArray),
        api!(RedisModule_ReplyWithLongLong),
    ) {
        // SAFETY: a valid command context; 5 elements follow.
        unsafe {
            array(ctx, 5);
            integer(ctx, 1);
            integer(ctx, a);
            integer(ctx, b);
            integer(ctx, calls);
            integer(ctx, ttl_ms);
        }
    }
    raw::REDISMODULE_OK as c_int
}

/// `FLOOR.SET key <24 bytes>`: what `FLOOR.CALL` replicates; stores the state and its
/// expiry (the last 8 bytes, absolute Unix milliseconds).
unsafe extern "C" fn floor_set(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    if argc != 3 {
        if let Some(arity) = api!(RedisModule_WrongArity) {
            // SAFETY: a valid command context.
            return unsafe { arity(ctx) };
        }
        return raw::REDISMODULE_OK as c_int;
    }
    // SAFETY: the server passes `argc` arguments.
    let args = unsafe { std::slice::from_raw_parts(argv, 3) };
    let Some(ptr_len) = api!(RedisModule_StringPtrLen) else {
        return error(ctx, c"ERR module API missing");
    };
    let mut len = 0usize;
    // SAFETY: a live argument.
    let bytes = unsafe { ptr_len(args[2], &mut len) };
    if len != STATE_LEN {
        return error(ctx, c"ERR the state is 24 bytes");
    }
    // SAFETY: `bytes` holds `len` bytes while the argument lives.
    let bytes = unsafe { std::slice::from_raw_parts(bytes.cast::<u8>(), len) };
    // SAFETY: a valid command context and a live argument.
    let (key, state) = match unsafe { open_state(ctx, args[1]) } {
        Ok(opened) => opened,
        Err(message) => return error(ctx, message),
    };
    // SAFETY: the key owns the state and is open for writing; no other reference.
    let state = unsafe { &mut *state };
    state.copy_from_slice(bytes);
    let expire_at = i64::from_le_bytes(state[16..].try_into().unwrap_or_default());
    if let Some(expire) = api!(RedisModule_SetAbsExpire) {
        // SAFETY: an open, writable key holding a value.
        unsafe { expire(key, expire_at) };
    }
    if let Some(replicate) = api!(RedisModule_ReplicateVerbatim) {
        // SAFETY: a valid command context.
        unsafe { replicate(ctx) };
    }
    if let Some(close) = api!(RedisModule_CloseKey) {
        // SAFETY: an open key, not used afterwards.
        unsafe { close(key) };
    }
    if let Some(ok) = api!(RedisModule_ReplyWithSimpleString) {
        // SAFETY: a valid command context.
        unsafe { ok(ctx, c"OK".as_ptr()) };
    }
    raw::REDISMODULE_OK as c_int
}

fn on_load(ctx: &Context, _args: &[RedisString]) -> Status {
    if let Ok(handle) = FLOOR_TYPE.raw_type.try_borrow() {
        RAW_TYPE.store(*handle, Ordering::Relaxed);
    }
    let Some(create) = api!(RedisModule_CreateCommand) else {
        return Status::Err;
    };
    let commands: [(&std::ffi::CStr, raw::RedisModuleCmdFunc); 2] = [
        (c"floor.call", Some(floor_call)),
        (c"floor.set", Some(floor_set)),
    ];
    for (name, entry) in commands {
        // SAFETY: called during load with the load context; NUL-terminated names.
        let status = unsafe {
            create(
                ctx.ctx,
                name.as_ptr(),
                entry,
                c"write deny-oom".as_ptr(),
                1,
                1,
                1,
            )
        };
        if status != raw::REDISMODULE_OK as c_int {
            return Status::Err;
        }
    }
    Status::Ok
}

#[allow(missing_docs)]
mod entry {
    use super::{FLOOR_TYPE, on_load};
    use redis_module::redis_module;

    redis_module! {
        name: "floor",
        version: 1,
        allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
        data_types: [FLOOR_TYPE],
        init: on_load,
    }
}
