//! The native data type: per key, one allocation holding the limiter.
//!
//! A key's value is one allocation in one of two layouts ([`Stored`]):
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

use crate::compact;
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
    /// A new value holding `encoding`; `None` if the allocation fails or the encoding is
    /// empty (no limiter's is; a header of length 0 would read as the compact mark).
    pub fn new(encoding: &[u8]) -> Option<Self> {
        if encoding.is_empty() {
            return None;
        }
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
        if len == 0 {
            return None;
        }
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

    /// A new compact value holding `bytes` (a [`compact`] layout); `None` if the
    /// allocation fails or the bytes do not start with the compact mark.
    pub fn compact(bytes: &[u8; compact::LEN]) -> Option<Self> {
        if bytes.first() != Some(&compact::MARK) {
            return None;
        }
        let layout = Layout::new::<[u8; compact::LEN]>();
        // SAFETY: a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        // SAFETY: the allocation holds `compact::LEN` bytes; the source does not overlap it.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr.as_ptr(), compact::LEN) };
        Some(Self(ptr))
    }

    /// A new value holding `limiter`: compact when it has such a layout, else its
    /// stored encoding; `None` if the allocation fails.
    pub fn of(limiter: &Limiter) -> Option<Self> {
        match compact::encode(limiter, None) {
            Some(bytes) => Self::compact(&bytes),
            None => Self::encode(limiter, limiter.encoded_len()),
        }
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
        // SAFETY: `self.0` is a live allocation made by `Value`, owned by this handle.
        if let Some(layout) = unsafe { value_layout(self.0.as_ptr()) } {
            // SAFETY: allocated by `Value` with this same layout, freed once.
            unsafe { std::alloc::dealloc(self.0.as_ptr(), layout) };
        }
    }
}

/// What a value of our type holds, borrowed.
pub enum Stored<'a> {
    /// A [`compact`] layout.
    Compact(&'a [u8; compact::LEN]),
    /// A stored encoding (`Limiter::encode`).
    Encoded(&'a [u8]),
}

/// What a value of our type holds, writable in place.
pub enum StoredMut<'a> {
    /// A [`compact`] layout.
    Compact(&'a mut [u8; compact::LEN]),
    /// A stored encoding (`Limiter::encode`), to be rewritten at the same length.
    Encoded(&'a mut [u8]),
}

impl Stored<'_> {
    /// The limiter the value holds (`None`: a compact value whose policy id is unknown,
    /// or an encoding that does not decode; neither can be stored).
    pub fn limiter(&self) -> Option<Limiter> {
        match self {
            Self::Compact(bytes) => compact::decode(bytes),
            Self::Encoded(bytes) => Limiter::decode(bytes).ok(),
        }
    }

    /// Runs `f` on the value's stored encoding (version 1): the bytes themselves, or a
    /// compact value's limiter encoded on the stack; `None` if it cannot be made.
    pub fn with_encoding<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match self {
            Self::Encoded(bytes) => Some(f(bytes)),
            Self::Compact(bytes) => {
                let limiter = compact::decode(bytes)?;
                let mut buffer = [0u8; COMPACT_ENCODING];
                let len = limiter.encode_into(&mut buffer)?;
                Some(f(buffer.get(..len)?))
            }
        }
    }

    /// Bytes the value occupies.
    fn size(&self) -> usize {
        match self {
            Self::Compact(bytes) => bytes.len(),
            Self::Encoded(bytes) => {
                let mut header = [0u8; MAX_HEADER];
                put_length(&mut header, bytes.len()).unwrap_or(MAX_HEADER) + bytes.len()
            }
        }
    }
}

/// The longest stored encoding of a limiter with a compact layout (five varints of at
/// most 10 bytes, a version and a tag).
const COMPACT_ENCODING: usize = 64;

/// What a value of our type holds.
///
/// # Safety
/// `raw` is null or a live value made by [`Value`]; the bytes must not outlive it.
pub unsafe fn stored<'a>(raw: *const c_void) -> Option<Stored<'a>> {
    let ptr = raw.cast::<u8>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a live value: a compact layout, or a length header then that many bytes.
    unsafe {
        if *ptr == compact::MARK {
            return Some(Stored::Compact(&*ptr.cast::<[u8; compact::LEN]>()));
        }
        let (header_len, len) = read_length(ptr);
        Some(Stored::Encoded(std::slice::from_raw_parts(
            ptr.add(header_len),
            len,
        )))
    }
}

/// What a value of our type holds, writable in place.
///
/// # Safety
/// As [`stored`], and no other reference to the bytes is alive.
pub unsafe fn stored_mut<'a>(raw: *mut c_void) -> Option<StoredMut<'a>> {
    let ptr = raw.cast::<u8>();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: see `stored`; the caller holds the only reference.
    unsafe {
        if *ptr == compact::MARK {
            return Some(StoredMut::Compact(&mut *ptr.cast::<[u8; compact::LEN]>()));
        }
        let (header_len, len) = read_length(ptr);
        Some(StoredMut::Encoded(std::slice::from_raw_parts_mut(
            ptr.add(header_len),
            len,
        )))
    }
}

/// The allocation of a live value, whichever its layout.
///
/// # Safety
/// `ptr` is a live value made by [`Value`].
unsafe fn value_layout(ptr: *const u8) -> Option<Layout> {
    // SAFETY: a live value's first byte, then its header.
    unsafe {
        if *ptr == compact::MARK {
            return Some(Layout::new::<[u8; compact::LEN]>());
        }
        let (header_len, len) = read_length(ptr);
        layout(header_len, len)
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
