//! The few server APIs the module uses, behind safe functions.
//!
//! Every `unsafe` block of the command path lives here. A missing API (an older
//! server) degrades to a documented fallback, never to a null call.

use crate::compact;
use crate::datatype;
use crate::error::CommandError;
use crate::propagation;
use crate::value;
use redis_module::raw;
use redlimit_core::Limiter;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Reads one function pointer of the module API (filled in by `RedisModule_Init`).
macro_rules! api {
    ($name:ident) => {
        // SAFETY: the API table is written once, during module load, before any command runs.
        unsafe { raw::$name }
    };
}

/// A raw argument of the current command.
pub type RawString = *mut raw::RedisModuleString;

/// The bytes of a server string (empty if the API is missing).
pub fn bytes<'a>(string: RawString) -> &'a [u8] {
    let Some(ptr_len) = api!(RedisModule_StringPtrLen) else {
        return &[];
    };
    let mut len = 0usize;
    // SAFETY: `string` is a live argument of the running command; the server returns
    // a pointer to `len` bytes that live as long as the string.
    let ptr = unsafe { ptr_len(string, &mut len) };
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: see above.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

/// The context of the running command.
#[derive(Clone, Copy)]
pub struct Ctx(*mut raw::RedisModuleCtx);

impl Ctx {
    /// Wraps the context the server passed to a command.
    pub fn new(ctx: *mut raw::RedisModuleCtx) -> Self {
        Self(ctx)
    }

    /// The raw pointer, for SDK calls.
    pub fn as_ptr(self) -> *mut raw::RedisModuleCtx {
        self.0
    }

    /// The server asks which arguments are keys (a `getkeys-api` command: cluster
    /// routing, `COMMAND GETKEYS`), instead of running the command.
    pub fn is_keys_position_request(self) -> bool {
        // SAFETY: a valid command context.
        api!(RedisModule_IsKeysPositionRequest).is_some_and(|is| unsafe { is(self.0) } != 0)
    }

    /// Answers a keys-position request: argument `pos` is a key.
    pub fn key_at_pos(self, pos: usize) {
        if let (Some(key_at), Ok(pos)) = (api!(RedisModule_KeyAtPos), c_int::try_from(pos)) {
            // SAFETY: a valid context of a keys-position request.
            unsafe { key_at(self.0, pos) };
        }
    }

    /// The server clock in microseconds: frozen per command, MULTI/EXEC and script
    /// where the server offers it (Redis 7.2+, Valkey), else the wall clock the server
    /// reads too (Redis 7.0 only has `RedisModule_Milliseconds`, whose truncation would
    /// make leases up to 1 ms short).
    pub fn server_micros(self) -> i64 {
        if let Some(cached) = api!(RedisModule_CachedMicroseconds) {
            // SAFETY: no arguments; reads the server's cached time.
            return unsafe { cached() };
        }
        if let Some(micros) = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|since| i64::try_from(since.as_micros()).ok())
        {
            return micros;
        }
        // SAFETY: no arguments.
        api!(RedisModule_Milliseconds).map_or(0, |ms| unsafe { ms() }.saturating_mul(1_000))
    }

    /// Replies an integer.
    pub fn reply_integer(self, value: i64) {
        if let Some(reply) = api!(RedisModule_ReplyWithLongLong) {
            // SAFETY: a valid command context.
            unsafe { reply(self.0, value) };
        }
    }

    /// Replies a boolean (an integer 1/0 under RESP2).
    pub fn reply_bool(self, value: bool) {
        match api!(RedisModule_ReplyWithBool) {
            // SAFETY: a valid command context.
            Some(reply) => unsafe {
                reply(self.0, c_int::from(value));
            },
            None => self.reply_integer(i64::from(value)),
        }
    }

    /// Opens an array reply of `len` elements.
    pub fn reply_array(self, len: usize) {
        if let Some(reply) = api!(RedisModule_ReplyWithArray) {
            // SAFETY: a valid command context.
            unsafe { reply(self.0, i64::try_from(len).unwrap_or(0)) };
        }
    }

    /// Opens a map reply of `len` pairs (a flat array of `2 * len` under RESP2).
    pub fn reply_map(self, len: usize) {
        match api!(RedisModule_ReplyWithMap) {
            // SAFETY: a valid command context.
            Some(reply) => unsafe {
                reply(self.0, i64::try_from(len).unwrap_or(0));
            },
            None => self.reply_array(len * 2),
        }
    }

    /// Replies a bulk string.
    pub fn reply_bulk(self, value: &[u8]) {
        if let Some(reply) = api!(RedisModule_ReplyWithStringBuffer) {
            // SAFETY: the buffer is valid for `len` bytes.
            unsafe { reply(self.0, value.as_ptr().cast::<c_char>(), value.len()) };
        }
    }

    /// Replies a simple status string.
    pub fn reply_simple(self, value: &CStr) {
        if let Some(reply) = api!(RedisModule_ReplyWithSimpleString) {
            // SAFETY: a NUL-terminated string.
            unsafe { reply(self.0, value.as_ptr()) };
        }
    }

    /// Replies nil.
    pub fn reply_null(self) {
        if let Some(reply) = api!(RedisModule_ReplyWithNull) {
            // SAFETY: a valid command context.
            unsafe { reply(self.0) };
        }
    }

    /// Replies an error; `message` starts with its code (`ERR`, `WRONGTYPE`, ...).
    pub fn reply_error(self, message: &str) {
        let text = CString::new(message.replace('\0', "")).unwrap_or_default();
        if let Some(reply) = api!(RedisModule_ReplyWithError) {
            // SAFETY: a NUL-terminated string.
            unsafe { reply(self.0, text.as_ptr()) };
        }
    }

    /// Propagates `RL.SETSTATE key <state>` to replicas and the AOF.
    pub fn replicate_state(self, key: RawString, state: &[u8]) {
        if !propagation::needed() {
            return;
        }
        if let Some(replicate) = api!(RedisModule_Replicate) {
            // SAFETY: "sb" takes a module string, then a buffer pointer and its length.
            unsafe {
                replicate(
                    self.0,
                    c"RL.SETSTATE".as_ptr(),
                    c"sb".as_ptr(),
                    key,
                    state.as_ptr().cast::<c_char>(),
                    state.len(),
                );
            }
        }
    }

    /// Propagates `RL.REPLAY <micros> <argv...>`: the running command with its decision
    /// time, which replicas and AOF replay re-run exactly.
    pub fn replicate_replay(self, micros: u64, argv: &[RawString]) {
        if !propagation::needed() {
            return;
        }
        if let Some(replicate) = api!(RedisModule_Replicate) {
            let micros = std::ffi::c_longlong::try_from(micros).unwrap_or(0);
            // SAFETY: "lv" takes a long long, then an array of module strings and its length;
            // `argv` are the live arguments of the running command.
            unsafe {
                replicate(
                    self.0,
                    c"RL.REPLAY".as_ptr(),
                    c"lv".as_ptr(),
                    micros,
                    argv.as_ptr(),
                    argv.len(),
                );
            }
        }
    }

    /// The command arrives from the primary (replication link) or from the AOF.
    pub fn is_replicated_or_loading(self) -> bool {
        let Some(flags) = api!(RedisModule_GetContextFlags) else {
            return false;
        };
        // SAFETY: a valid command context.
        let bits = u32::try_from(unsafe { flags(self.0) }).unwrap_or(0);
        bits & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING) != 0
    }

    /// Propagates `DEL key` to replicas and the AOF.
    pub fn replicate_delete(self, key: RawString) {
        if !propagation::needed() {
            return;
        }
        if let Some(replicate) = api!(RedisModule_Replicate) {
            // SAFETY: "s" takes one module string.
            unsafe {
                replicate(self.0, c"DEL".as_ptr(), c"s".as_ptr(), key);
            }
        }
    }

    /// Propagates the running command as it was called (for deterministic commands).
    pub fn replicate_verbatim(self) {
        if !propagation::needed() {
            return;
        }
        if let Some(replicate) = api!(RedisModule_ReplicateVerbatim) {
            // SAFETY: a valid command context.
            unsafe { replicate(self.0) };
        }
    }

    /// Opens `key` for reading, or for reading and writing.
    ///
    /// A missing key opened for reading has no handle: it reads as [`Content::Empty`].
    pub fn open_key(self, key: RawString, writable: bool) -> Result<Key, CommandError> {
        let mode = raw::REDISMODULE_READ | if writable { raw::REDISMODULE_WRITE } else { 0 };
        let open = api!(RedisModule_OpenKey).ok_or(CommandError::Internal)?;
        // SAFETY: a valid context and a live key name; the handle is closed on drop.
        let ptr = unsafe { open(self.0, key, c_int::try_from(mode).unwrap_or(1)) };
        let ptr = NonNull::new(ptr.cast::<raw::RedisModuleKey>());
        if writable && ptr.is_none() {
            return Err(CommandError::Internal);
        }
        Ok(Key {
            ptr,
            ctx: self,
            name: key,
            content: None,
        })
    }
}

/// What an opened key holds.
pub enum Content<'a> {
    /// Nothing.
    Empty,
    /// A limiter of this module.
    Limiter(value::Stored<'a>),
    /// Any other type.
    Other,
}

/// The longest encoding [`Key::store`] writes in one pass, on the stack.
const SMALL_ENCODING: usize = 64;

/// What an opened key holds, as the server's value pointer.
#[derive(Clone, Copy)]
enum RawContent {
    Empty,
    Ours(NonNull<c_void>),
    Other,
}

/// An open key, closed on drop.
///
/// The module sets `NO_IMPLICIT_SIGNAL_MODIFIED`: opening a key for writing and writing
/// nothing (a denied request) does not touch `WATCH` or client-side caching. Writes signal
/// the change themselves.
pub struct Key {
    ptr: Option<NonNull<raw::RedisModuleKey>>,
    ctx: Ctx,
    name: RawString,
    /// What the key holds, once looked up: a command reads and then writes its key,
    /// and asks the server once. Every change made through this handle updates it; a
    /// command opens each key through one handle at a time (`RL.ALL` opens a key named
    /// twice once), so nothing else changes the value under it.
    content: Option<RawContent>,
}

impl Key {
    fn raw_content(&mut self) -> RawContent {
        if let Some(content) = self.content {
            return content;
        }
        let content = self.look_up();
        self.content = Some(content);
        content
    }

    fn look_up(&self) -> RawContent {
        let Some(ptr) = self.ptr else {
            return RawContent::Empty;
        };
        let (Some(key_type), Some(get_type), Some(get_value)) = (
            api!(RedisModule_KeyType),
            api!(RedisModule_ModuleTypeGetType),
            api!(RedisModule_ModuleTypeGetValue),
        ) else {
            return RawContent::Other;
        };
        // SAFETY: an open key handle.
        let kind = unsafe { key_type(ptr.as_ptr()) };
        if kind == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
            return RawContent::Empty;
        }
        // SAFETY: an open key handle.
        if kind != raw::REDISMODULE_KEYTYPE_MODULE as c_int
            || unsafe { get_type(ptr.as_ptr()) } != datatype::raw_type()
        {
            return RawContent::Other;
        }
        // SAFETY: an open key handle holding a value of our type.
        match NonNull::new(unsafe { get_value(ptr.as_ptr()) }) {
            Some(value) => RawContent::Ours(value),
            None => RawContent::Other,
        }
    }

    /// What the key holds.
    pub fn content(&mut self) -> Content<'_> {
        match self.raw_content() {
            RawContent::Empty => Content::Empty,
            // SAFETY: values of our type are always made by `value::Value`, owned by the
            // key and borrowed here for no longer than the key handle.
            RawContent::Ours(value) => match unsafe { value::stored(value.as_ptr()) } {
                Some(stored) => Content::Limiter(stored),
                None => Content::Other,
            },
            RawContent::Other => Content::Other,
        }
    }

    /// The limiter the key holds (`None`: no key), decoded.
    pub fn limiter(&mut self) -> Result<Option<Limiter>, CommandError> {
        match self.content() {
            Content::Empty => Ok(None),
            // Every stored encoding was checked on its way in: this cannot fail.
            Content::Limiter(stored) => stored.limiter().map(Some).ok_or(CommandError::Internal),
            Content::Other => Err(CommandError::WrongType(None)),
        }
    }

    /// The bytes and remaining time to live (ms; `None`: no expiry) of a key holding a
    /// plain Redis string, or `None` for anything else (no key, another type).
    ///
    /// Read in place (`RedisModule_StringDMA`); the bytes live as long as this borrow.
    pub fn string_with_ttl(&mut self) -> Option<(&[u8], Option<i64>)> {
        let ptr = self.ptr?;
        let (key_type, dma, get_expire) = (
            api!(RedisModule_KeyType)?,
            api!(RedisModule_StringDMA)?,
            api!(RedisModule_GetExpire)?,
        );
        // SAFETY: an open key handle.
        if unsafe { key_type(ptr.as_ptr()) } != raw::REDISMODULE_KEYTYPE_STRING as c_int {
            return None;
        }
        // SAFETY: an open key handle holding a string.
        let ttl = unsafe { get_expire(ptr.as_ptr()) };
        let ttl = (ttl != raw::REDISMODULE_NO_EXPIRE.into()).then_some(ttl);
        let mut len = 0usize;
        let mode = c_int::try_from(raw::REDISMODULE_READ).unwrap_or(1);
        // SAFETY: an open key handle holding a string; the server returns its `len` bytes,
        // valid until the key is modified or closed, which the `&mut self` borrow prevents.
        let data = unsafe { dma(ptr.as_ptr(), &mut len, mode) };
        if data.is_null() {
            return None;
        }
        // SAFETY: see above.
        let value = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) };
        Some((value, ttl))
    }

    /// Stores `limiter` (in its compact layout when it has one, else its stored
    /// encoding; written in place when the key already holds a value of the same layout
    /// and length) and expires the key at `expire_at_ms`, absolute Unix milliseconds.
    /// Returns the stored encoding when that is what the value holds (for propagation;
    /// `None`: a compact value, whose encoding the caller makes if it needs it).
    ///
    /// `previous_expire_at_ms` is the expiry the key's current limiter was stored with
    /// (derived from that limiter, as `expire_at_ms` is from the new one): when the key
    /// holds a limiter and the two are equal, the expiry is not set again (a fixed
    /// window keeps its expiry for the whole window).
    pub fn store(
        &mut self,
        limiter: &Limiter,
        expire_at_ms: i64,
        previous_expire_at_ms: Option<i64>,
    ) -> Result<Option<&[u8]>, ()> {
        let content = self.raw_content();
        // SAFETY: our value, owned by this key, opened for writing; no other reference
        // to its bytes is alive (this borrow of the key is the only one).
        let current = match content {
            RawContent::Ours(value) => unsafe { value::stored_mut(value.as_ptr()) },
            _ => None,
        };
        let hint = match &current {
            Some(value::StoredMut::Compact(bytes)) => Some(compact::id(bytes)),
            _ => None,
        };
        let (written, value) = match compact::encode(limiter, hint) {
            Some(compact) => match (content, current) {
                (RawContent::Ours(value), Some(value::StoredMut::Compact(bytes))) => {
                    *bytes = compact;
                    (true, value)
                }
                _ => (false, self.put(content, value::Value::compact(&compact))?),
            },
            None => self.store_encoded(limiter, content, current)?,
        };
        // The key keeps its expiry when its value was written in place: set it only if
        // it moves. (A value replaced may lose it, without `ModuleTypeReplaceValue`.)
        if !written || previous_expire_at_ms != Some(expire_at_ms) {
            let set_expire = api!(RedisModule_SetAbsExpire).ok_or(())?;
            let ptr = self.ptr.ok_or(())?;
            // SAFETY: an open, writable key that now holds a value.
            let status = unsafe { set_expire(ptr.as_ptr(), expire_at_ms) };
            if status != raw::REDISMODULE_OK as c_int {
                self.signal_modified();
                return Err(());
            }
        }
        self.signal_modified();
        // SAFETY: the key's value, made by `value::Value`; the bytes live as long as
        // this borrow of the key, which nothing can change meanwhile.
        Ok(match unsafe { value::stored(value.as_ptr()) } {
            Some(value::Stored::Encoded(bytes)) => Some(bytes),
            _ => None,
        })
    }

    /// Stores `limiter`'s stored encoding: in place when `current` is an encoding of the
    /// same length (then `true`), else in a new value. Returns the value.
    fn store_encoded(
        &mut self,
        limiter: &Limiter,
        content: RawContent,
        current: Option<value::StoredMut<'_>>,
    ) -> Result<(bool, NonNull<c_void>), ()> {
        // One encoding pass for the common sizes (every limiter but long logs and
        // lease sets), written on the stack; a second pass counts the larger ones.
        let mut small = [0u8; SMALL_ENCODING];
        let written = limiter.encode_into(&mut small);
        let small = written.and_then(|len| small.get(..len));
        let len = small.map_or_else(|| limiter.encoded_len(), <[u8]>::len);
        if let (RawContent::Ours(value), Some(value::StoredMut::Encoded(bytes))) =
            (content, current)
            && bytes.len() == len
        {
            match small {
                Some(encoding) => bytes.copy_from_slice(encoding),
                None => {
                    limiter.encode_into(bytes).ok_or(())?;
                }
            }
            return Ok((true, value));
        }
        let value = match small {
            Some(encoding) => value::Value::new(encoding),
            None => value::Value::encode(limiter, len),
        };
        Ok((false, self.put(content, value)?))
    }

    /// Puts a new value in the key: replacing ours (keeping the key and its expiry), or
    /// set in an empty key. Returns it.
    fn put(
        &mut self,
        content: RawContent,
        value: Option<value::Value>,
    ) -> Result<NonNull<c_void>, ()> {
        let value = value.ok_or(())?;
        match content {
            RawContent::Ours(_) => self.replace(value),
            RawContent::Empty => self.set_value(value),
            RawContent::Other => Err(()),
        }
    }

    /// Swaps the key's value for `value`, keeping the key (and its expiry) where it is;
    /// without `RedisModule_ModuleTypeReplaceValue`, sets it anew. Returns the new value.
    fn replace(&mut self, value: value::Value) -> Result<NonNull<c_void>, ()> {
        let (Some(replace_value), Some(ptr)) = (replace_value_api(), self.ptr) else {
            return self.set_value(value);
        };
        let new = value.into_raw();
        let mut old: *mut c_void = std::ptr::null_mut();
        // SAFETY: an open, writable key holding a value of our type; on success the
        // server keeps `new` and hands the old value back to us.
        let status = unsafe { replace_value(ptr.as_ptr(), datatype::raw_type(), new, &mut old) };
        if status == raw::REDISMODULE_OK as c_int {
            // SAFETY: the old value is ours again, and no longer in the keyspace.
            drop(unsafe { value::Value::from_raw(old) });
            let new = NonNull::new(new).ok_or(())?;
            self.content = Some(RawContent::Ours(new));
            Ok(new)
        } else {
            // SAFETY: the server refused `new`, so it is still ours.
            drop(unsafe { value::Value::from_raw(new) });
            Err(())
        }
    }

    /// Tells the server the key changed (`WATCH`, client-side caching).
    fn signal_modified(&self) {
        if let Some(signal) = api!(RedisModule_SignalModifiedKey) {
            // SAFETY: the command's context and the key's name, both live.
            unsafe { signal(self.ctx.0, self.name) };
        }
    }

    /// Replaces whatever the key holds by `value`.
    fn set_value(&mut self, value: value::Value) -> Result<NonNull<c_void>, ()> {
        let set_value = api!(RedisModule_ModuleTypeSetValue).ok_or(())?;
        let ptr = self.ptr.ok_or(())?;
        // Whatever happens next, look the key up again if asked.
        self.content = None;
        let value = value.into_raw();
        // SAFETY: the server takes ownership of `value` and frees it with our `free` callback.
        let status = unsafe { set_value(ptr.as_ptr(), datatype::raw_type(), value) };
        if status == raw::REDISMODULE_OK as c_int {
            let value = NonNull::new(value).ok_or(())?;
            self.content = Some(RawContent::Ours(value));
            return Ok(value);
        }
        // SAFETY: the server refused the value, so it is still ours.
        drop(unsafe { value::Value::from_raw(value) });
        Err(())
    }

    /// Deletes the key.
    pub fn delete(&mut self) {
        if let (Some(delete), Some(ptr)) = (api!(RedisModule_DeleteKey), self.ptr) {
            // SAFETY: an open, writable key.
            unsafe { delete(ptr.as_ptr()) };
            self.content = None;
            self.signal_modified();
        }
    }
}

/// The value of one configuration parameter (`CONFIG GET name`), read with
/// `RedisModule_Call`; `None` if it cannot be read.
pub fn config_get(ctx: *mut raw::RedisModuleCtx, name: &CStr) -> Option<Vec<u8>> {
    let (call, element, string, free) = (
        api!(RedisModule_Call)?,
        api!(RedisModule_CallReplyArrayElement)?,
        api!(RedisModule_CallReplyStringPtr)?,
        api!(RedisModule_FreeCallReply)?,
    );
    // SAFETY: a valid context; "cc" takes two NUL-terminated strings.
    let reply = unsafe {
        call(
            ctx,
            c"CONFIG".as_ptr(),
            c"cc".as_ptr(),
            c"GET".as_ptr(),
            name.as_ptr(),
        )
    };
    if reply.is_null() {
        return None;
    }
    // SAFETY: a live reply; element 1 of `[name, value]` (null when absent).
    let value = unsafe { element(reply, 1) };
    let text = if value.is_null() {
        None
    } else {
        let mut len = 0usize;
        // SAFETY: a live string element; `len` bytes, copied before the reply is freed.
        let ptr = unsafe { string(value, &mut len) };
        // SAFETY: see above.
        (!ptr.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }.to_vec())
    };
    // SAFETY: the reply from `RedisModule_Call`, freed once.
    unsafe { free(reply) };
    text
}

/// `RedisModule_ModuleTypeReplaceValue(key, type, new, &old)`.
type ReplaceValue = unsafe extern "C" fn(
    *mut raw::RedisModuleKey,
    *mut raw::RedisModuleType,
    *mut c_void,
    *mut *mut c_void,
) -> c_int;

/// `RedisModule_ModuleTypeReplaceValue`, looked up at load (the SDK does not bind it).
static REPLACE_VALUE: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());

/// Looks up the server APIs the SDK does not bind; called once, at load.
pub fn load_optional_apis() {
    let Some(get_api) = api!(RedisModule_GetApi) else {
        return;
    };
    let mut pointer: *mut c_void = std::ptr::null_mut();
    // SAFETY: GetApi writes the function's address when the server has it.
    let status = unsafe {
        get_api(
            c"RedisModule_ModuleTypeReplaceValue".as_ptr(),
            (&raw mut pointer).cast(),
        )
    };
    if status == raw::REDISMODULE_OK as c_int {
        REPLACE_VALUE.store(pointer, Ordering::Relaxed);
    }
}

fn replace_value_api() -> Option<ReplaceValue> {
    let pointer = REPLACE_VALUE.load(Ordering::Relaxed);
    if pointer.is_null() {
        return None;
    }
    // SAFETY: the address the server gave for `RedisModule_ModuleTypeReplaceValue`, whose
    // C signature `ReplaceValue` spells out.
    Some(unsafe { std::mem::transmute::<*mut c_void, ReplaceValue>(pointer) })
}

impl Drop for Key {
    fn drop(&mut self) {
        if let (Some(close), Some(ptr)) = (api!(RedisModule_CloseKey), self.ptr) {
            // SAFETY: closes the handle opened in `open_key`, once.
            unsafe { close(ptr.as_ptr()) };
        }
    }
}

/// Writes a line to the server log at `warning` level.
pub fn log_warning(ctx: *mut raw::RedisModuleCtx, message: &str) {
    let text = CString::new(message.replace('\0', "")).unwrap_or_default();
    if let Some(log) = api!(RedisModule_Log) {
        // SAFETY: NUL-terminated level and message; a null ctx logs as the module.
        unsafe { log(ctx, c"warning".as_ptr(), c"%s".as_ptr(), text.as_ptr()) };
    }
}
