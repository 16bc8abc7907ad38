//! The native data type: per key, one allocation holding the limiter's stored encoding.
//!
//! A key's value is the limiter's stored encoding (`Limiter::encode`, version 1) in a
//! single allocation, after a varint of its length ([`Value`]): 16 bytes for a throttle,
//! fixed window or APPROX counter, 32 for most token buckets, where a `Box<Limiter>`
//! took 48 plus the heap parts of sliding logs and leases. Commands decode it (about
//! 20 ns), decide, and write the new encoding back in place when its length is unchanged.
//!
//! RDB (and so DUMP/RESTORE/MIGRATE and full sync) saves the encoded bytes as they are;
//! AOF rewrite and Valkey's atomic slot migration emit `RL.SETSTATE key <bytes>`, the
//! same command replication uses. Loading checks every byte: unknown versions and
//! invalid policies fail the load instead of entering the keyspace. Every callback runs
//! inside [`guard`]: a panic is logged and answered with a safe default.

use crate::ffi;
use crate::guard::guard;
use redis_module::native_types::RedisType;
use redis_module::raw;
use redlimit_core::Limiter;
use std::alloc::Layout;
use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;
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

/// The longest varint of a length.
const MAX_HEADER: usize = 10;

/// A stored limiter: its encoding after a varint of its length, in one allocation that
/// this handle owns (dropping it frees the allocation).
pub struct Value(NonNull<u8>);

impl Value {
    /// A new value holding `encoding`; `None` if the allocation fails.
    pub fn new(encoding: &[u8]) -> Option<Self> {
        let mut header = [0u8; MAX_HEADER];
        let header_len = put_length(&mut header, encoding.len())?;
        let layout = layout(header_len, encoding.len())?;
        // SAFETY: the layout has a non-zero size (at least one header byte).
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        // SAFETY: the allocation holds `header_len + encoding.len()` bytes; the sources do
        // not overlap it.
        unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), ptr.as_ptr(), header_len);
            std::ptr::copy_nonoverlapping(
                encoding.as_ptr(),
                ptr.as_ptr().add(header_len),
                encoding.len(),
            );
        }
        Some(Self(ptr))
    }

    /// A new value holding the stored encoding of `limiter`, `len` bytes long
    /// (`Limiter::encoded_len`), written straight into the allocation; `None` if the
    /// allocation fails or the encoding is not `len` bytes.
    pub fn encode(limiter: &Limiter, len: usize) -> Option<Self> {
        let mut header = [0u8; MAX_HEADER];
        let header_len = put_length(&mut header, len)?;
        let layout = layout(header_len, len)?;
        // SAFETY: the layout has a non-zero size (at least one header byte).
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        // From here on the allocation is owned (and freed on an early return) by `value`.
        let value = Self(ptr);
        // SAFETY: the allocation holds `header_len + len` initialised bytes; the header
        // does not overlap it.
        let bytes = unsafe {
            std::ptr::copy_nonoverlapping(header.as_ptr(), ptr.as_ptr(), header_len);
            std::slice::from_raw_parts_mut(ptr.as_ptr().add(header_len), len)
        };
        (limiter.encode_into(bytes)? == len).then_some(value)
    }

    /// Gives the value to the server (freed by our `free` callback, or taken back with
    /// [`Value::from_raw`]).
    pub fn into_raw(self) -> *mut c_void {
        let ptr = self.0.as_ptr().cast::<c_void>();
        std::mem::forget(self);
        ptr
    }

    /// Takes back a value given away with [`Value::into_raw`].
    ///
    /// # Safety
    /// `raw` came from [`Value::into_raw`] and nothing else owns it any more.
    pub unsafe fn from_raw(raw: *mut c_void) -> Option<Self> {
        NonNull::new(raw.cast::<u8>()).map(Self)
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a live allocation made by `Value::new` or `Value::encode`, owned
        // by this handle.
        let (header_len, len) = unsafe { read_length(self.0.as_ptr()) };
        if let Some(layout) = layout(header_len, len) {
            // SAFETY: allocated by `Value` with this same layout, freed once.
            unsafe { std::alloc::dealloc(self.0.as_ptr(), layout) };
        }
    }
}

/// The encoding a value of our type holds.
///
/// # Safety
/// `raw` is null or a live value made by [`Value`]; the bytes must not outlive it.
pub unsafe fn encoding<'a>(raw: *const c_void) -> Option<&'a [u8]> {
    let ptr = raw.cast::<u8>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a live value: a length header, then that many bytes.
    unsafe {
        let (header_len, len) = read_length(ptr);
        Some(std::slice::from_raw_parts(ptr.add(header_len), len))
    }
}

/// The encoding a value of our type holds, writable in place (same length).
///
/// # Safety
/// As [`encoding`], and no other reference to the bytes is alive.
pub unsafe fn encoding_mut<'a>(raw: *mut c_void) -> Option<&'a mut [u8]> {
    let ptr = raw.cast::<u8>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: see `encoding`; the caller holds the only reference.
    unsafe {
        let (header_len, len) = read_length(ptr);
        Some(std::slice::from_raw_parts_mut(ptr.add(header_len), len))
    }
}

/// The allocation of a value: the header and the encoding, byte-aligned.
fn layout(header_len: usize, len: usize) -> Option<Layout> {
    Layout::from_size_align(header_len.checked_add(len)?, 1).ok()
}

/// Writes `len` as a varint into `header`; its length.
fn put_length(header: &mut [u8; MAX_HEADER], len: usize) -> Option<usize> {
    let mut n = u64::try_from(len).ok()?;
    for (index, slot) in header.iter_mut().enumerate() {
        if n < 0x80 {
            *slot = n as u8;
            return Some(index + 1);
        }
        *slot = (n as u8) | 0x80;
        n >>= 7;
    }
    None
}

/// Reads the length header of a value: (header bytes, encoding bytes).
///
/// # Safety
/// `ptr` points at a header written by `put_length`.
unsafe fn read_length(ptr: *const u8) -> (usize, usize) {
    let mut len = 0usize;
    for index in 0..MAX_HEADER {
        // SAFETY: the header ends at the first byte below 0x80, at most MAX_HEADER bytes in.
        let byte = unsafe { *ptr.add(index) };
        len |= usize::from(byte & 0x7f) << (7 * index);
        if byte < 0x80 {
            return (index + 1, len);
        }
    }
    (MAX_HEADER, len)
}

/// The encoding of a value the server passed to one of our callbacks.
fn value_encoding<'a>(value: *const c_void) -> Option<&'a [u8]> {
    // SAFETY: the server only hands our callbacks values of our type, made by `Value`.
    unsafe { encoding(value) }
}

/// A new value of our type for the server, from a decoded limiter (null if it fails).
fn into_raw_value(limiter: &Limiter) -> *mut c_void {
    Value::encode(limiter, limiter.encoded_len()).map_or(std::ptr::null_mut(), Value::into_raw)
}

extern "C" fn rdb_save(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard((), || save_value(io, value));
}

fn save_value(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    let Some(bytes) = value_encoding(value) else {
        return;
    };
    // SAFETY: an RDB io handle and a buffer of `len` bytes.
    if let Some(save) = unsafe { raw::RedisModule_SaveStringBuffer } {
        unsafe { save(io, bytes.as_ptr().cast::<c_char>(), bytes.len()) };
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
    let Some(bytes) = value_encoding(value) else {
        return;
    };
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
    guard(0, || {
        value_encoding(value).map_or(0, |bytes| {
            let mut header = [0u8; MAX_HEADER];
            put_length(&mut header, bytes.len()).unwrap_or(MAX_HEADER) + bytes.len()
        })
    })
}

extern "C" fn digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard((), || digest_value(md, value));
}

fn digest_value(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let Some(bytes) = value_encoding(value) else {
        return;
    };
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
    // SAFETY: created by `Value::into_raw` and handed to the server, which frees it once.
    guard((), || drop(unsafe { Value::from_raw(value) }));
}

extern "C" fn copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        value_encoding(value)
            .and_then(Value::new)
            .map_or(std::ptr::null_mut(), Value::into_raw)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_encoding() {
        for len in [0usize, 1, 14, 15, 127, 128, 300, 20_000] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let raw = Value::new(&bytes).map_or(std::ptr::null_mut(), Value::into_raw);
            assert!(!raw.is_null());
            assert_eq!(unsafe { encoding(raw) }, Some(&bytes[..]));
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
