//! A key's value: one allocation in one of two layouts ([`Stored`]).
//!
//! - **compact** ([`crate::compact`]): 16 bytes starting with the compact mark (0), the
//!   policy as an interned id and the state in fixed-width fields;
//! - **encoded**: the limiter's stored encoding (`Limiter::encode`, version 1) after a
//!   varint of its length (never 0, which marks a compact value).
//!
//! [`Value`] owns an allocation until it is given to the server; [`stored`] and
//! [`stored_mut`] read one the server holds. The size of an allocation is in its first
//! bytes, so freeing needs nothing else (`free` may run on the lazyfree thread). The
//! type's callbacks are in [`crate::datatype`].

use crate::compact;
use redlimit_core::Limiter;
use std::alloc::Layout;
use std::ffi::c_void;
use std::ptr::NonNull;

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
    pub(crate) fn size(&self) -> usize {
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
