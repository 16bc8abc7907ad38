//! The command table: names, flags, key positions, documentation, entry points.

mod adjust;
mod admin;
mod all;
mod lease;
mod limit;
mod options;
mod policy;
mod replay;
mod throttle;
mod tokenbucket;
mod usage;
mod window;

use crate::error::{CommandError, INTERNAL};
use crate::ffi::{self, Ctx, RawString};
use redis_module::raw;
use std::ffi::{CStr, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// A command handler: reads arguments, replies on success, returns the error otherwise.
pub(crate) type Handler = fn(Ctx, &[RawString]) -> Result<(), CommandError>;
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

/// Where a command's keys are.
#[derive(Clone, Copy)]
pub enum Keys {
    /// From `first` to `last` (-1: through the end), every `step` arguments.
    Range(c_int, c_int, c_int),
    /// A count at argument 1, then that many keys.
    Counted,
    /// Only the entry point knows (`getkeys-api`): no key spec.
    Reported,
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
    /// Where the keys are.
    pub keys: Keys,
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

/// An option: `token` alone (a flag) or `token name` (a value named `name`).
const fn option(token: &'static CStr, name: &'static CStr, kind: ArgKind) -> ArgDoc {
    ArgDoc {
        name,
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
entry_point!(sliding_entry, "rl.sliding", window::sliding);
entry_point!(fixed_entry, "rl.fixed", window::fixed);
entry_point!(all_entry, "rl.all", all::run);
entry_point!(acquire_entry, "rl.acquire", lease::acquire);
entry_point!(release_entry, "rl.release", lease::release);
entry_point!(reset_entry, "rl.reset", admin::reset);
entry_point!(status_entry, "rl.status", admin::status);
entry_point!(adjust_entry, "rl.adjust", adjust::run);
entry_point!(setstate_entry, "rl.setstate", admin::set_state);
entry_point!(replay_entry, "rl.replay", replay::run);
entry_point!(usage_add_entry, "rl.usage.add", usage::add);
entry_point!(usage_entry, "rl.usage", usage::read);

const KEY_WRITE: u32 = raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_UPDATE;

/// Every command of the module.
pub static COMMANDS: [CommandSpec; 14] = [
    CommandSpec {
        name: c"rl.tokenbucket",
        entry: tokenbucket_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: Keys::Range(1, 1, 1),
        key_flags: KEY_WRITE,
        arity: -5,
        summary:
            c"Token bucket with continuous refill: takes COST tokens if the bucket holds them.",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"capacity", ArgKind::Integer),
            arg(c"refill_tokens", ArgKind::Integer),
            arg(c"refill_ms", ArgKind::Integer),
            option(c"COST", c"n", ArgKind::Integer),
            option(c"PEEK", c"peek", ArgKind::Flag),
            option(c"MAXWAIT", c"ms", ArgKind::Integer),
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.throttle",
        entry: throttle_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: Keys::Range(1, 1, 1),
        key_flags: KEY_WRITE,
        arity: -5,
        summary: c"GCRA rate limit, a drop-in for redis-cell's CL.THROTTLE (period in seconds).",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"max_burst", ArgKind::Integer),
            arg(c"count_per_period", ArgKind::Integer),
            arg(c"period_s", ArgKind::Integer),
            ArgDoc {
                optional: true,
                ..arg(c"quantity", ArgKind::Integer)
            },
        ],
        optional: true,
    },
    CommandSpec {
        name: c"rl.sliding",
        entry: sliding_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: Keys::Range(1, 1, 1),
        key_flags: KEY_WRITE,
        arity: -4,
        summary: c"Sliding window: exact over a compact log, or approximate in constant memory with APPROX.",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"limit", ArgKind::Integer),
            arg(c"window_ms", ArgKind::Integer),
            option(c"COST", c"n", ArgKind::Integer),
            option(c"PEEK", c"peek", ArgKind::Flag),
            option(c"APPROX", c"approx", ArgKind::Flag),
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.fixed",
        entry: fixed_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: Keys::Range(1, 1, 1),
        key_flags: KEY_WRITE,
        arity: -4,
        summary: c"Fixed window aligned to the Unix epoch: at most limit units per window.",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"limit", ArgKind::Integer),
            arg(c"window_ms", ArgKind::Integer),
            option(c"COST", c"n", ArgKind::Integer),
            option(c"PEEK", c"peek", ArgKind::Flag),
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.all",
        entry: all_entry,
        // getkeys-api: cluster routing finds the keys through the entry point.
        flags: c"write deny-oom fast getkeys-api",
        acl: c"write fast",
        keys: Keys::Counted,
        key_flags: KEY_WRITE,
        arity: -5,
        summary: c"All-or-nothing over several limits: counted against every key iff every key allows.",
        args: &[
            arg(c"numkeys", ArgKind::Integer),
            ArgDoc { multiple: true, ..arg(c"key", ArgKind::Key) },
            ArgDoc { multiple: true, ..arg(c"policy", ArgKind::String) },
            option(c"COST", c"n", ArgKind::Integer),
            ArgDoc {
                multiple: true,
                ..option(c"COSTS", c"n", ArgKind::Integer)
            },
            option(c"PEEK", c"peek", ArgKind::Flag),
            option(c"MAXWAIT", c"ms", ArgKind::Integer),
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.adjust",
        entry: adjust_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: Keys::Range(1, 1, 1),
        key_flags: KEY_WRITE,
        arity: -3,
        summary: c"Corrects a limiter once a request's real cost is known: a negative delta refunds, a positive one charges.",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"delta", ArgKind::Integer),
            ArgDoc {
                optional: true,
                multiple: true,
                ..arg(c"policy", ArgKind::String)
            },
            option(c"SINCE", c"ms", ArgKind::Integer),
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.acquire",
        entry: acquire_entry,
        flags: c"write deny-oom fast",
        acl: c"write fast",
        keys: Keys::Range(1, 1, 1),
        key_flags: KEY_WRITE,
        arity: 5,
        summary: c"Takes or renews a lease of a distributed concurrency limit; leases expire by themselves.",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"limit", ArgKind::Integer),
            arg(c"lease_ms", ArgKind::Integer),
            arg(c"lease_id", ArgKind::String),
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.release",
        entry: release_entry,
        flags: c"write fast",
        acl: c"write fast",
        keys: Keys::Range(1, 1, 1),
        key_flags: KEY_WRITE,
        arity: 3,
        summary: c"Releases a lease taken with RL.ACQUIRE: 1 if it was held, else 0.",
        args: &[arg(c"key", ArgKind::Key), arg(c"lease_id", ArgKind::String)],
        optional: false,
    },
    CommandSpec {
        name: c"rl.reset",
        entry: reset_entry,
        flags: c"write",
        acl: c"write",
        keys: Keys::Range(1, -1, 1),
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
        keys: Keys::Range(1, 1, 1),
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
        keys: Keys::Range(1, 1, 1),
        key_flags: raw::REDISMODULE_CMD_KEY_OW | raw::REDISMODULE_CMD_KEY_UPDATE,
        arity: 3,
        summary: c"Stores an encoded limiter state as is: how replication and AOF carry state.",
        args: &[arg(c"key", ArgKind::Key), arg(c"state", ArgKind::String)],
        optional: false,
    },
    CommandSpec {
        name: c"rl.replay",
        entry: replay_entry,
        // Internal: how replicas and the AOF re-run a call at its decision time. Only
        // administrators may send it; from clients its time is capped at the server's.
        flags: c"write deny-oom getkeys-api",
        acl: c"write admin dangerous",
        keys: Keys::Reported,
        key_flags: KEY_WRITE,
        arity: -4,
        summary: c"Internal: re-runs a redlimit call at its decision time (replication and AOF).",
        args: &[
            arg(c"micros", ArgKind::Integer),
            arg(c"command", ArgKind::String),
            ArgDoc {
                multiple: true,
                ..arg(c"arg", ArgKind::String)
            },
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.usage.add",
        entry: usage_add_entry,
        // Not `fast`: a call walks up to 1,440 buckets (bounded, but not constant).
        flags: c"write deny-oom",
        acl: c"write",
        keys: Keys::Range(1, 1, 1),
        key_flags: KEY_WRITE,
        arity: 5,
        summary: c"Adds an amount to a usage counter (a ring of epoch-aligned buckets) and replies the total over the ring.",
        args: &[
            arg(c"key", ArgKind::Key),
            arg(c"amount", ArgKind::Integer),
            arg(c"bucket_ms", ArgKind::Integer),
            arg(c"buckets", ArgKind::Integer),
        ],
        optional: false,
    },
    CommandSpec {
        name: c"rl.usage",
        entry: usage_entry,
        flags: c"readonly",
        acl: c"read",
        keys: Keys::Range(1, 1, 1),
        key_flags: raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
        arity: 2,
        summary: c"Reads a usage counter: bucket_start_ms, amount pairs for every bucket of the ring, oldest first.",
        args: &[arg(c"key", ArgKind::Key)],
        optional: false,
    },
];
