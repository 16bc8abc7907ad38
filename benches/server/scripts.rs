//! Our Lua equivalents of the common rate-limit scripts, loaded into every server the
//! bench starts (throughput, bytes per key, propagated bytes).

/// Our Lua equivalent of the common token bucket script: tokens and a timestamp in a
/// hash, refilled from the server's `TIME`, an expiry when the bucket would be full.
/// `KEYS[1]`, `ARGV`: capacity, refill_tokens, refill_ms.
const LUA_TOKEN_BUCKET: &str = "\
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2]) / tonumber(ARGV[3])
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or capacity
local ts = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate) + 1)
return {allowed, capacity, math.floor(tokens)}
";

/// Our Lua equivalent of the common GCRA script (as in go-redis/redis_rate): the
/// theoretical arrival time in a string with an expiry. `KEYS[1]`, `ARGV`: burst,
/// count per period, period_ms.
const LUA_GCRA: &str = "\
local burst = tonumber(ARGV[1])
local emission = tonumber(ARGV[3]) / tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + emission
if new_tat - emission * (burst + 1) > now then
  return {0, burst + 1, 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil(new_tat - now))
return {1, burst + 1, math.floor((now - (new_tat - emission * (burst + 1))) / emission)}
";

/// Our Lua equivalent of the common sorted-set sliding log. `KEYS[1]`, `ARGV`: limit,
/// window_ms, a member suffix (unique per caller).
const LUA_SLIDING_LOG: &str = "\
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. '-' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit, limit - count - 1}
end
return {0, limit, 0}
";

/// Our Lua equivalent of the common fixed window: INCR, and PEXPIRE on the first call.
/// `KEYS[1]`, `ARGV`: limit, window_ms.
const LUA_FIXED_WINDOW: &str = "\
local limit = tonumber(ARGV[1])
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if count > limit then return {0, limit, 0} end
return {1, limit, limit - count}
";

/// The SHA1s of the scripts, as `SCRIPT LOAD` answered them.
pub struct Scripts {
    pub empty: String,
    pub token_bucket: String,
    pub gcra: String,
    pub sliding_log: String,
    pub fixed_window: String,
    /// The client's script engine (`client/lua`, `redlimit::scripts::SOURCE`).
    pub engine: String,
}

impl Scripts {
    pub fn load(con: &mut redis::Connection, server: &str) -> Self {
        let mut load = |source: &str| -> String {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(source)
                .query(con)
                .unwrap_or_else(|e| panic!("{server}: SCRIPT LOAD failed: {e}"))
        };
        Self {
            empty: load(""),
            token_bucket: load(LUA_TOKEN_BUCKET),
            gcra: load(LUA_GCRA),
            sliding_log: load(LUA_SLIDING_LOG),
            fixed_window: load(LUA_FIXED_WINDOW),
            engine: load(redlimit::scripts::SOURCE),
        }
    }
}
