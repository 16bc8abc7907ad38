//! The native data type: one `Box<Limiter>` per key, stored in the core's encoding.
//!
//! RDB (and so DUMP/RESTORE/MIGRATE and full sync) saves the encoded bytes; AOF
//! rewrite and Valkey's atomic slot migration emit `RL.SETSTATE key <bytes>`, the same
//! command replication uses. Loading checks every byte: unknown versions and invalid
//! policies fail the load instead of entering the keyspace.

use crate::ffi;
use redis_module::native_types::RedisType;
use redis_module::raw;
use redlimit_core::Limiter;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

/// The type name `TYPE key` shows (exactly 9 characters, as the server requires).
pub const TYPE_NAME: &str = "redlimit0";
/// The RDB encoding version of the type; the encoded bytes carry their own version too.
pub const ENCODING_VERSION: i32 = 1;

/// The data type, registered at load.
pub static LIMITER_TYPE: RedisType = RedisType::new(
    TYPE_NAME,
    ENCODING_VERSION,
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: Some(rdb_load),
        rdb_save: Some(rdb_save),
        aof_rewrite: Some(aof_rewrite),
        mem_usage: Some(mem_usage),
        digest: Some(digest),
        free: Some(free),
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: Some(copy),
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: None,
        copy2: None,
        aux_save2: None,
    },
);

static RAW_TYPE: AtomicPtr<raw::RedisModuleType> = AtomicPtr::new(std::ptr::null_mut());

/// Remembers the registered type handle (called once, after registration).
pub fn remember_raw_type() {
    if let Ok(handle) = LIMITER_TYPE.raw_type.try_borrow() {
        RAW_TYPE.store(*handle, Ordering::Relaxed);
    }
}

/// The registered type handle.
pub fn raw_type() -> *mut raw::RedisModuleType {
    RAW_TYPE.load(Ordering::Relaxed)
}

/// Borrows a value of our type.
fn limiter<'a>(value: *mut c_void) -> Option<&'a Limiter> {
    // SAFETY: the server only hands our callbacks values created as `Box<Limiter>`.
    unsafe { value.cast::<Limiter>().as_ref() }
}

/// Gives the server a new value of our type.
fn into_value(limiter: Limiter) -> *mut c_void {
    Box::into_raw(Box::new(limiter)).cast::<c_void>()
}

extern "C" fn rdb_save(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    let Some(limiter) = limiter(value) else {
        return;
    };
    let bytes = limiter.encode();
    // SAFETY: an RDB io handle and a buffer of `len` bytes.
    if let Some(save) = unsafe { raw::RedisModule_SaveStringBuffer } {
        unsafe { save(io, bytes.as_ptr().cast::<c_char>(), bytes.len()) };
    }
}

extern "C" fn rdb_load(io: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    if encver != ENCODING_VERSION {
        ffi::log_warning(
            std::ptr::null_mut(),
            &format!(
                "redlimit: cannot load encoding version {encver}; this build reads {ENCODING_VERSION}"
            ),
        );
        return std::ptr::null_mut();
    }
    let Some(bytes) = load_buffer(io) else {
        return std::ptr::null_mut();
    };
    match Limiter::decode(&bytes) {
        Ok(limiter) => into_value(limiter),
        Err(error) => {
            ffi::log_warning(
                std::ptr::null_mut(),
                &format!("redlimit: refusing a stored limiter: {error}"),
            );
            std::ptr::null_mut()
        }
    }
}

/// Reads one string buffer from an RDB stream, copying it out of server memory.
fn load_buffer(io: *mut raw::RedisModuleIO) -> Option<Vec<u8>> {
    // SAFETY: the loader API is present on every supported server.
    let (load, free, is_error) = unsafe {
        (
            raw::RedisModule_LoadStringBuffer?,
            raw::RedisModule_Free?,
            raw::RedisModule_IsIOError,
        )
    };
    let mut len = 0usize;
    // SAFETY: an RDB io handle; the returned buffer is ours to free.
    let ptr = unsafe { load(io, &mut len) };
    // SAFETY: an RDB io handle.
    let failed = is_error.is_some_and(|is_error| unsafe { is_error(io) } != 0);
    if ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` holds `len` bytes; it is freed right after the copy.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec();
    // SAFETY: allocated by the server for us.
    unsafe { free(ptr.cast::<c_void>()) };
    (!failed).then_some(bytes)
}

extern "C" fn aof_rewrite(
    io: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let Some(limiter) = limiter(value) else {
        return;
    };
    let bytes = limiter.encode();
    // SAFETY: "sb" takes the key, then a buffer pointer and its length.
    if let Some(emit) = unsafe { raw::RedisModule_EmitAOF } {
        unsafe {
            emit(
                io,
                c"RL.SETSTATE".as_ptr(),
                c"sb".as_ptr(),
                key,
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            )
        };
    }
}

extern "C" fn mem_usage(value: *const c_void) -> usize {
    // SAFETY: a value of our type.
    unsafe { value.cast::<Limiter>().as_ref() }.map_or(0, Limiter::memory_usage)
}

extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let Some(limiter) = limiter(value) else {
        return;
    };
    let bytes = limiter.encode();
    // SAFETY: a digest handle and a buffer of `len` bytes.
    unsafe {
        if let Some(add) = raw::RedisModule_DigestAddStringBuffer {
            add(md, bytes.as_ptr().cast::<c_char>(), bytes.len());
        }
        if let Some(end) = raw::RedisModule_DigestEndSequence {
            end(md);
        }
    }
}

extern "C" fn free(value: *mut c_void) {
    if !value.is_null() {
        // SAFETY: created by `into_value`/`Key::set_new` as a `Box<Limiter>`, freed once.
        drop(unsafe { Box::from_raw(value.cast::<Limiter>()) });
    }
}

extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    // SAFETY: a value of our type.
    match unsafe { value.cast::<Limiter>().as_ref() } {
        Some(limiter) => into_value(limiter.clone()),
        None => std::ptr::null_mut(),
    }
}
