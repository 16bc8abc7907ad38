//! The command table: names, flags, key positions, documentation, entry points.

mod admin;
mod limit;
mod throttle;
mod tokenbucket;

use crate::error::{CommandError, INTERNAL};
use crate::ffi::{self, Ctx, RawString};
use redis_module::raw;
use std::ffi::{CStr, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A command handler: reads arguments, replies on success, returns the error otherwise.
type Handler = fn(Ctx, &[RawString]) -> Result<(), CommandError>;
/// The C entry point the server calls.
pub type EntryPoint = extern "C" fn(*mut raw::RedisModuleCtx, *mut RawString, c_int) -> c_int;

/// One documented argument, for `COMMAND DOCS`.
pub struct ArgDoc {
    /// The argument's name.
    pub name: &'static CStr,
    /// Its kind.
    pub kind: ArgKind,
    /// The keyword that introduces it, for options.
    pub token: Option<&'static CStr>,
    /// May be left out.
    pub optional: bool,
    /// May repeat.
    pub multiple: bool,
}

/// Argument kinds shown by `COMMAND DOCS`.
#[derive(Clone, Copy)]
pub enum ArgKind {
    /// A key name.
    Key,
    /// An integer.
    Integer,
    /// Any bytes.
    String,
    /// A keyword alone.
    Flag,
}

/// Everything the server needs to know about one command.
pub struct CommandSpec {
    /// The name, as clients call it.
    pub name: &'static CStr,
    /// The entry point.
    pub entry: EntryPoint,
    /// Server flags (`write deny-oom fast`...).
    pub flags: &'static CStr,
    /// ACL categories besides the module's own.
    pub acl: &'static CStr,
    /// First key, last key (-1: through the end), step.
    pub keys: (c_int, c_int, c_int),
    /// Key-spec flags (`REDISMODULE_CMD_KEY_*`).
    pub key_flags: u32,
    /// Arity with the command name: negative means "at least".
    pub arity: c_int,
    /// One line for `COMMAND DOCS`.
    pub summary: &'static CStr,
    /// The arguments, for `COMMAND DOCS`.
    pub args: &'static [ArgDoc],
    /// Loading continues without this command when its name is taken.
    pub optional: bool,
}

const fn arg(name: &'static CStr, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        name,
        kind,
        token: None,
        optional: false,
        multiple: false,
    }
}

const fn option(token: &'static CStr, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        name: token,
        kind,
        token: Some(token),
        optional: true,
        multiple: false,
    }
}

/// Runs `handler` for the server, replying its error and surviving any panic.
fn run(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut RawString,
    argc: c_int,
    name: &str,
    handler: Handler,
) -> c_int {
    let ctx = Ctx::new(ctx);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let len = usize::try_from(argc).unwrap_or(0);
        let args: &[RawString] = if argv.is_null() || len == 0 {
            &[]
        } else {
            // SAFETY: the server passes `argc` live arguments in `argv`.
            unsafe { std::slice::from_raw_parts(argv, len) }
        };
        handler(ctx, args)
    }));
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(error)) => ctx.reply_error(&error.reply_text(name)),
        Err(_) => {
            ffi::log_warning(
                ctx.as_ptr(),
                &format!("redlimit: {name} failed; the server keeps running"),
            );
            ctx.reply_error(INTERNAL);
        }
    }
    raw::REDISMODULE_OK as c_int
}

macro_rules! entry_point {
    ($entry:ident, $name:literal, $handler:path) => {
        extern "C" fn $entry(
            ctx: *mut raw::RedisModuleCtx,
            argv: *mut RawString,
            argc: c_int,
        ) -> c_int {
            run(ctx, argv, argc, $name, $handler)
        }
    };
}

entry_point!(tokenbucket_entry, "rl.tokenbucket", tokenbucket::run);
entry_point!(throttle_entry, "rl.throttle", throttle::run);
entry_point!(reset_entry, "rl.reset", admin::reset);
entry_point!(status_entry, "rl.status", admin::status);
entry_point!(setstate_entry, "rl.setstate", admin::set_state);

const KEY_WRITE: u32 = raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE;

/// Every command of the module.
pub static COMMANDS: [CommandSpec; 5] = [
    CommandSpec {
        name: c"rl.tokenbucket",
        entry: tokenbucket_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: (1, 1, 1),
        key_flags: KEY_WRITE,
        arity: -5,
        summary:
            c"Token bucket with continuous refill: takes COST tokens if the bucket holds them.",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"capacity", ArgKind::Integer),
            arg(c"refill_tokens", ArgKind::Integer),
            arg(c"refill_ms", ArgKind::Integer),
            option(c"COST", ArgKind::Integer),
            option(c"PEEK", ArgKind::Flag),
            option(c"MAXWAIT", ArgKind::Integer),
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.throttle",
        entry: throttle_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: (1, 1, 1),
        key_flags: KEY_WRITE,
        arity: -5,
        summary: c"GCRA rate limit, a drop-in for redis-cell's CL.THROTTLE (period in seconds).",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"max_burst", ArgKind::Integer),
            arg(c"count_per_period", ArgKind::Integer),
            arg(c"period", ArgKind::Integer),
            ArgDoc {
                optional: true,
                ..arg(c"quantity", ArgKind::Integer)
            },
        ],
        optional: true,
    },
    CommandSpec {
        name: c"rl.reset",
        entry: reset_entry,
        flags: c"write",
        acl: c"write",
        keys: (1, -1, 1),
        key_flags: raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_DELETE,
        arity: -2,
        summary:
            c"Deletes limiter keys; WRONGTYPE and nothing deleted if any key is not a limiter.",
        args: &[ArgDoc {
            multiple: true,
            ..arg(c"key", ArgKind::Key)
        }],
        optional: false,
    },
    CommandSpec {
        name: c"rl.status",
        entry: status_entry,
        flags: c"readonly fast",
        acl: c"read fast",
        keys: (1, 1, 1),
        key_flags: raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
        arity: 2,
        summary:
            c"Reports a limiter's policy and what a request of cost 1 would get, changing nothing.",
        args: &[arg(c"key", ArgKind::Key)],
        optional: false,
    },
    CommandSpec {
        name: c"rl.setstate",
        entry: setstate_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: (1, 1, 1),
        key_flags: raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE,
        arity: 3,
        summary: c"Stores an encoded limiter state as is: how replication and AOF carry state.",
        args: &[arg(c"key", ArgKind::Key), arg(c"state", ArgKind::String)],
        optional: false,
    },
];
