//! Whether anything consumes what a write propagates.
//!
//! `RedisModule_Replicate` costs about 0.3 µs per call even when nothing reads the
//! propagated stream, and it is also how a module command counts as a change for RDB
//! save points (`server.dirty`). A cache-only server — a primary that has never had a
//! replica, with no AOF, no save points and no fork since the module loaded — consumes
//! none of it, and the module then skips the call.
//!
//! The state is decided once at load and can only move one way, to "propagate", for the
//! life of the process:
//!
//! - at load, from `INFO replication` (role, replicas, a replication backlog),
//!   `INFO persistence` (AOF) and `CONFIG GET save`; anything unreadable counts as a
//!   consumer;
//! - on any of these server events: a fork child born (every full sync, disk or
//!   diskless, dual-channel or not, every AOF rewrite and every BGSAVE forks before
//!   the first write it must see), a replica attaching or leaving, a role change, a
//!   primary link change, a persistence event, or a `CONFIG SET` of `save` or
//!   `appendonly`; and if subscribing to any of them fails.
//!
//! Why that is enough: a replica can only receive the stream through a full sync
//! (which forks: the snapshot holds every write before the fork, the stream every
//! write after it) or a partial one (which needs a backlog, which only a previous
//! replica creates); the AOF only starts through a rewrite (a fork) or a config change;
//! save points only through a config change. The events run on the main thread between
//! commands, so no write falls between a consumer appearing and the module seeing it.
//! `INFO redlimit` shows the state (`propagation:1` when the module propagates).

use crate::ffi;
use crate::guard::guard;
use redis_module::raw;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether writes are propagated. Starts on: until load has looked, assume a consumer.
static PROPAGATE: AtomicBool = AtomicBool::new(true);

/// Whether a write must be propagated (replicas, AOF, backlog or save points may need it).
pub fn needed() -> bool {
    PROPAGATE.load(Ordering::Relaxed)
}

/// From now on, every write is propagated.
fn turn_on() {
    PROPAGATE.store(true, Ordering::Relaxed);
}

/// The server events after which a consumer may exist (all of data version 1).
const EVENTS: [u64; 6] = [
    raw::REDISMODULE_EVENT_FORK_CHILD,
    raw::REDISMODULE_EVENT_REPLICA_CHANGE,
    raw::REDISMODULE_EVENT_REPLICATION_ROLE_CHANGED,
    raw::REDISMODULE_EVENT_MASTER_LINK_CHANGE,
    raw::REDISMODULE_EVENT_PERSISTENCE,
    raw::REDISMODULE_EVENT_CONFIG,
];

/// Configuration parameters whose change may add a consumer.
const CONSUMER_CONFIGS: [&[u8]; 2] = [b"save", b"appendonly"];

/// Decides the state at load: subscribes to the events first, then looks at the server.
pub fn set_up(ctx: *mut raw::RedisModuleCtx) {
    let subscribed = EVENTS.iter().all(|&id| subscribe(ctx, id));
    let none_now = subscribed && !has_consumer(ctx);
    PROPAGATE.store(!none_now, Ordering::Relaxed);
}

fn subscribe(ctx: *mut raw::RedisModuleCtx, id: u64) -> bool {
    // SAFETY: the API table is filled in before `OnLoad`.
    let Some(subscribe) = (unsafe { raw::RedisModule_SubscribeToServerEvent }) else {
        return false;
    };
    let event = raw::RedisModuleEvent { id, dataver: 1 };
    // SAFETY: the load context and a callback that lives as long as the module.
    unsafe { subscribe(ctx, event, Some(on_event)) == raw::REDISMODULE_OK as c_int }
}

/// A server event that may mean a consumer: propagate from now on.
unsafe extern "C" fn on_event(
    _ctx: *mut raw::RedisModuleCtx,
    event: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut c_void,
) {
    guard((), || {
        if event.id != raw::REDISMODULE_EVENT_CONFIG || config_adds_consumer(data) {
            turn_on();
        }
    });
}

/// Whether a `CONFIG SET` changed a parameter that can add a consumer (unreadable: yes).
fn config_adds_consumer(data: *mut c_void) -> bool {
    let change = data.cast::<raw::RedisModuleConfigChange>();
    if change.is_null() {
        return true;
    }
    // SAFETY: for the config event the server passes a `RedisModuleConfigChangeV1`.
    let (count, names) = unsafe { ((*change).num_changes, (*change).config_names) };
    if names.is_null() {
        return true;
    }
    (0..usize::try_from(count).unwrap_or(usize::MAX)).any(|i| {
        // SAFETY: `config_names` holds `num_changes` NUL-terminated names.
        let name = unsafe { *names.add(i) };
        name.is_null()
            // SAFETY: a NUL-terminated name owned by the server for the callback.
            || CONSUMER_CONFIGS.contains(&unsafe { CStr::from_ptr(name) }.to_bytes())
    })
}

/// Whether the server has, or may have, a consumer right now (unreadable: yes).
fn has_consumer(ctx: *mut raw::RedisModuleCtx) -> bool {
    let replication = info_fields(ctx, c"replication", |info| {
        let role = info.text(c"role")?;
        Some(
            role != b"master"
                || info.number(c"connected_slaves")? != 0
                || info.number(c"repl_backlog_active")? != 0,
        )
    });
    let aof = info_fields(ctx, c"persistence", |info| {
        Some(info.number(c"aof_enabled")? != 0)
    });
    replication.unwrap_or(true) || aof.unwrap_or(true) || save_points(ctx).unwrap_or(true)
}

/// One INFO section, read through the module API.
struct Info(*mut raw::RedisModuleServerInfoData);

impl Info {
    fn number(&self, field: &CStr) -> Option<i64> {
        // SAFETY: the API table is filled in before `OnLoad`.
        let get = unsafe { raw::RedisModule_ServerInfoGetFieldSigned }?;
        let mut error: c_int = 0;
        // SAFETY: live info data and a NUL-terminated field name.
        let value = unsafe { get(self.0, field.as_ptr(), &mut error) };
        (error == 0).then_some(value)
    }

    fn text(&self, field: &CStr) -> Option<&[u8]> {
        // SAFETY: the API table is filled in before `OnLoad`.
        let get = unsafe { raw::RedisModule_ServerInfoGetFieldC }?;
        // SAFETY: live info data and a NUL-terminated field name; the text lives as long
        // as the data, which this borrow cannot outlive.
        let text: *const c_char = unsafe { get(self.0, field.as_ptr()) };
        (!text.is_null()).then(|| unsafe { CStr::from_ptr(text) }.to_bytes())
    }
}

/// Reads `section` of INFO and answers `read` on it.
fn info_fields(
    ctx: *mut raw::RedisModuleCtx,
    section: &CStr,
    read: impl FnOnce(&Info) -> Option<bool>,
) -> Option<bool> {
    // SAFETY: the API table is filled in before `OnLoad`.
    let (get, free) = unsafe {
        (
            raw::RedisModule_GetServerInfo?,
            raw::RedisModule_FreeServerInfo?,
        )
    };
    // SAFETY: the load context and a NUL-terminated section name.
    let data = unsafe { get(ctx, section.as_ptr()) };
    if data.is_null() {
        return None;
    }
    let answer = read(&Info(data));
    // SAFETY: data from `RedisModule_GetServerInfo`, freed once.
    unsafe { free(ctx, data) };
    answer
}

/// Whether RDB save points are configured (`CONFIG GET save` is not empty).
fn save_points(ctx: *mut raw::RedisModuleCtx) -> Option<bool> {
    ffi::config_get(ctx, c"save").map(|value| !value.iter().all(u8::is_ascii_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_changes_name_the_consumers() {
        let names = [c"maxmemory".as_ptr(), c"save".as_ptr()];
        let mut change = raw::RedisModuleConfigChange {
            version: 1,
            num_changes: 1,
            config_names: names.as_ptr().cast_mut(),
        };
        let data = (&raw mut change).cast::<c_void>();
        assert!(!config_adds_consumer(data));
        change.num_changes = 2;
        let data = (&raw mut change).cast::<c_void>();
        assert!(config_adds_consumer(data));
        assert!(config_adds_consumer(std::ptr::null_mut()));
    }
}
