//! Registers the command table with the server: commands, `COMMAND DOCS`, ACL categories.

use crate::commands::{ArgDoc, ArgKind, COMMANDS, CommandSpec, Keys};
use crate::ffi;
use redis_module::raw;
use std::ffi::{CStr, c_int};
use std::ptr;

/// The module's own ACL category, where the server supports adding one (Redis 7.4+, Valkey 8+).
const ACL_CATEGORY: &CStr = c"redlimit";

/// Creates every command. A taken name fails the load, unless the command is optional.
pub fn register_commands(ctx: *mut raw::RedisModuleCtx) -> Result<(), String> {
    let own_category = add_acl_category(ctx);
    for spec in &COMMANDS {
        if !create(ctx, spec) {
            if spec.optional {
                ffi::log_warning(
                    ctx,
                    &format!(
                        "redlimit: {} already exists; loading without it",
                        spec.name.to_string_lossy()
                    ),
                );
                continue;
            }
            return Err(format!(
                "cannot create command {}",
                spec.name.to_string_lossy()
            ));
        }
        let command = get_command(ctx, spec.name);
        if command.is_null() {
            continue;
        }
        set_acl_categories(ctx, command, spec, own_category);
        if !set_info(command, spec) {
            ffi::log_warning(
                ctx,
                &format!(
                    "redlimit: no COMMAND DOCS for {}",
                    spec.name.to_string_lossy()
                ),
            );
        }
    }
    Ok(())
}

fn create(ctx: *mut raw::RedisModuleCtx, spec: &CommandSpec) -> bool {
    // SAFETY: called during load with the load context.
    let Some(create) = (unsafe { raw::RedisModule_CreateCommand }) else {
        return false;
    };
    // Counted keys cannot be said with first/last/step: the key specs say them.
    let (first, last, step) = match spec.keys {
        Keys::Range(first, last, step) => (first, last, step),
        Keys::Counted | Keys::Reported => (0, 0, 0),
    };
    // SAFETY: NUL-terminated static strings and a valid entry point.
    let status = unsafe {
        create(
            ctx,
            spec.name.as_ptr(),
            Some(spec.entry),
            spec.flags.as_ptr(),
            first,
            last,
            step,
        )
    };
    status == raw::REDISMODULE_OK as c_int
}

fn get_command(ctx: *mut raw::RedisModuleCtx, name: &CStr) -> *mut raw::RedisModuleCommand {
    // SAFETY: called during load, after the command was created.
    match unsafe { raw::RedisModule_GetCommand } {
        Some(get) => unsafe { get(ctx, name.as_ptr()) },
        None => ptr::null_mut(),
    }
}

fn add_acl_category(ctx: *mut raw::RedisModuleCtx) -> bool {
    // SAFETY: called during load; the API exists on Redis 7.4+ and Valkey 8+.
    match unsafe { raw::RedisModule_AddACLCategory } {
        Some(add) => (unsafe { add(ctx, ACL_CATEGORY.as_ptr()) }) == raw::REDISMODULE_OK as c_int,
        None => false,
    }
}

fn set_acl_categories(
    ctx: *mut raw::RedisModuleCtx,
    command: *mut raw::RedisModuleCommand,
    spec: &CommandSpec,
    own: bool,
) {
    // SAFETY: called during load; the API exists on Redis 7.2+ and Valkey.
    let Some(set) = (unsafe { raw::RedisModule_SetCommandACLCategories }) else {
        return;
    };
    let categories = if own {
        format!(
            "{} {}",
            spec.acl.to_string_lossy(),
            ACL_CATEGORY.to_string_lossy()
        )
    } else {
        spec.acl.to_string_lossy().into_owned()
    };
    let categories = std::ffi::CString::new(categories).unwrap_or_default();
    // SAFETY: a registered command and a NUL-terminated list.
    if unsafe { set(command, categories.as_ptr()) } != raw::REDISMODULE_OK as c_int {
        ffi::log_warning(
            ctx,
            &format!(
                "redlimit: cannot set ACL categories of {}",
                spec.name.to_string_lossy()
            ),
        );
    }
}

static INFO_VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// Sets arity, key specs and argument docs (Redis 7.0+, Valkey).
fn set_info(command: *mut raw::RedisModuleCommand, spec: &CommandSpec) -> bool {
    // SAFETY: called during load.
    let Some(set_info) = (unsafe { raw::RedisModule_SetCommandInfo }) else {
        return false;
    };
    let mut key_specs = match spec.keys {
        Keys::Reported => [zeroed_key_spec(), zeroed_key_spec()],
        _ => [key_spec(spec), zeroed_key_spec()],
    };
    let mut args: Vec<raw::RedisModuleCommandArg> = spec.args.iter().map(command_arg).collect();
    args.push(zeroed_arg());
    let info = raw::RedisModuleCommandInfo {
        version: &INFO_VERSION,
        summary: spec.summary.as_ptr(),
        complexity: c"O(1) per key".as_ptr(),
        since: c"0.1.0".as_ptr(),
        history: ptr::null_mut(),
        tips: ptr::null(),
        arity: spec.arity,
        key_specs: key_specs.as_mut_ptr(),
        args: args.as_mut_ptr(),
    };
    // SAFETY: every pointer lives until the call returns; the server copies what it keeps.
    unsafe { set_info(command, &info) == raw::REDISMODULE_OK as c_int }
}

fn key_spec(spec: &CommandSpec) -> raw::RedisModuleCommandKeySpec {
    let mut key_spec = zeroed_key_spec();
    key_spec.flags = u64::from(spec.key_flags);
    key_spec.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
    match spec.keys {
        Keys::Range(first, last, step) => {
            key_spec.bs.index.pos = first;
            key_spec.find_keys_type =
                raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
            key_spec.fk.range.lastkey = if last < 0 { last } else { last - first };
            key_spec.fk.range.keystep = step;
            key_spec.fk.range.limit = 0;
        }
        Keys::Reported => {}
        Keys::Counted => {
            key_spec.bs.index.pos = 1;
            key_spec.find_keys_type =
                raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_KEYNUM;
            key_spec.fk.keynum.keynumidx = 0;
            key_spec.fk.keynum.firstkey = 1;
            key_spec.fk.keynum.keystep = 1;
        }
    }
    key_spec
}

fn command_arg(doc: &ArgDoc) -> raw::RedisModuleCommandArg {
    let kind = match doc.kind {
        ArgKind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
        ArgKind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
        ArgKind::String => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
        ArgKind::Flag => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
    };
    let mut flags = 0;
    if doc.optional {
        flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
    }
    if doc.multiple {
        flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
    }
    let mut arg = zeroed_arg();
    arg.name = doc.name.as_ptr();
    arg.type_ = kind;
    arg.key_spec_index = if matches!(doc.kind, ArgKind::Key) {
        0
    } else {
        -1
    };
    arg.token = doc.token.map_or(ptr::null(), CStr::as_ptr);
    arg.flags = c_int::try_from(flags).unwrap_or(0);
    arg
}

fn zeroed_key_spec() -> raw::RedisModuleCommandKeySpec {
    // SAFETY: a plain C struct of integers, pointers and unions; all-zero is its terminator.
    unsafe { std::mem::zeroed() }
}

fn zeroed_arg() -> raw::RedisModuleCommandArg {
    // SAFETY: a plain C struct of integers and pointers; all-zero is its terminator.
    unsafe { std::mem::zeroed() }
}
