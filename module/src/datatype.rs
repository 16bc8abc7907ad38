//! The native data type: per key, one allocation holding the limiter.
//!
//! A key's value is one allocation in one of two layouts (`crate::value`):
//! - **compact** ([`crate::compact`]): 16 bytes, the policy as an interned id and the
//!   state in fixed-width fields, for token buckets, throttles, fixed windows and APPROX
//!   counters (when their policy is interned and their numbers fit): read without
//!   decoding varints or checking the policy again, written in place;
//! - **encoded**: the limiter's stored encoding (`Limiter::encode`, version 1) after a
//!   varint of its length (never 0, which marks a compact value): everything else.
//!
//! Outside the process a value is always its stored encoding: RDB (and so
//! DUMP/RESTORE/MIGRATE and full sync) saves it, AOF rewrite and Valkey's atomic slot
//! migration emit `RL.SETSTATE key <bytes>` (the command replication uses), digests hash
//! it; a compact value is decoded and encoded for them, byte-identical. Loading checks
//! every byte: unknown versions and invalid policies fail the load instead of entering
//! the keyspace. Every callback runs inside [`guard`]: a panic is logged and answered
//! with a safe default. `free` (possibly on the lazyfree thread) only releases the
//! allocation: its size is in its first bytes, and the policy table is not touched.

use crate::ffi;
use crate::guard::guard;
use crate::value::{Stored, Value, stored};
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

/// What a value the server passed to one of our callbacks holds.
fn value_stored<'a>(value: *const c_void) -> Option<Stored<'a>> {
    // SAFETY: the server only hands our callbacks values of our type, made by `Value`.
    unsafe { stored(value) }
}

/// A new value of our type for the server, from a decoded limiter (null if it fails).
fn into_raw_value(limiter: &Limiter) -> *mut c_void {
    Value::of(limiter).map_or(std::ptr::null_mut(), Value::into_raw)
}

extern "C" fn rdb_save(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard((), || save_value(io, value));
}

fn save_value(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    let Some(stored) = value_stored(value) else {
        return;
    };
    // SAFETY: an RDB io handle and a buffer of `len` bytes.
    if let Some(save) = unsafe { raw::RedisModule_SaveStringBuffer } {
        stored.with_encoding(|bytes| unsafe {
            save(io, bytes.as_ptr().cast::<c_char>(), bytes.len());
        });
    }
}

extern "C" fn rdb_load(io: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    // A panic here (untrusted bytes) fails the load of this key, never the server.
    guard(std::ptr::null_mut(), || load_value(io, encver))
}

fn load_value(io: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
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
        Ok(limiter) => into_raw_value(&limiter),
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
    guard((), || rewrite_value(io, key, value));
}

fn rewrite_value(
    io: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    let Some(stored) = value_stored(value) else {
        return;
    };
    // SAFETY: "sb" takes the key, then a buffer pointer and its length.
    if let Some(emit) = unsafe { raw::RedisModule_EmitAOF } {
        stored.with_encoding(|bytes| unsafe {
            emit(
                io,
                c"RL.SETSTATE".as_ptr(),
                c"sb".as_ptr(),
                key,
                bytes.as_ptr().cast::<c_char>(),
                bytes.len(),
            );
        });
    }
}

extern "C" fn mem_usage(value: *const c_void) -> usize {
    guard(0, || value_stored(value).map_or(0, |stored| stored.size()))
}

extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard((), || digest_value(md, value));
}

fn digest_value(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let Some(stored) = value_stored(value) else {
        return;
    };
    // SAFETY: a digest handle and a buffer of `len` bytes.
    unsafe {
        if let Some(add) = raw::RedisModule_DigestAddStringBuffer {
            stored.with_encoding(|bytes| {
                add(md, bytes.as_ptr().cast::<c_char>(), bytes.len());
            });
        }
        if let Some(end) = raw::RedisModule_DigestEndSequence {
            end(md);
        }
    }
}

extern "C" fn free(value: *mut c_void) {
    // SAFETY: created by `Value::into_raw` and handed to the server, which frees it once.
    guard((), || drop(unsafe { Value::from_raw(value) }));
}

extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let copied = match value_stored(value) {
            Some(Stored::Compact(bytes)) => Value::compact(bytes),
            Some(Stored::Encoded(bytes)) => Value::new(bytes),
            None => None,
        };
        copied.map_or(std::ptr::null_mut(), Value::into_raw)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_encoding() {
        assert!(
            Value::new(&[]).is_none(),
            "a length of 0 is the compact mark"
        );
        for len in [1usize, 14, 15, 127, 128, 300, 20_000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let raw = Value::new(&bytes).map_or(std::ptr::null_mut(), Value::into_raw);
            assert!(!raw.is_null());
            assert!(matches!(unsafe { stored(raw) }, Some(Stored::Encoded(b)) if b == &bytes[..]));
            // The length prefix is LEB128: 7 bits per byte.
            let prefix = match len {
                0..128 => 1,
                128..16_384 => 2,
                _ => 3,
            };
            assert_eq!(mem_usage(raw), len + prefix);
            drop(unsafe { Value::from_raw(raw) });
        }
    }
}
