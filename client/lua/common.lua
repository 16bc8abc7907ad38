-- redlimit script engine, part 1 of 11: shared helpers.
--
-- The script is the concatenation of client/lua/*.lua in the order listed in
-- client/lua/ORDER (every client builds it the same way). It mirrors redlimit-core
-- exactly. Lua numbers are doubles: every value is kept an integer below 2^53, where
-- doubles are exact, and inputs whose computations could go beyond are refused with
-- an error naming the argument (see docs/operations.md, "managed Redis").
--
-- ARGV[1] is the operation, ARGV[2] a time override in microseconds ("0": the
-- server's TIME); the override exists for tests only.

if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local EXACT = 9007199254740992 -- 2^53
local BOUND = 2251799813685248 -- 2^51: the most units any one state or sum may span
local WRONGTYPE_OTHER = 'WRONGTYPE Operation against a key holding the wrong kind of value'

local function fail(message)
  error({ err = message })
end

-- A base-10 integer argument, exact as a double.
local function int(value, name)
  if type(value) ~= 'string' or not string.match(value, '^%d+$') then
    fail('ERR ' .. name .. ' must be a non-negative integer')
  end
  local n = tonumber(value)
  if n >= EXACT then
    fail('ERR ' .. name .. ' must be below 9007199254740992 on the script engine')
  end
  return n
end

local function positive(value, name)
  local n = int(value, name)
  if n == 0 then
    fail('ERR ' .. name .. ' must be a positive integer')
  end
  return n
end

local function at_most(n, max, name, why)
  if n > max then
    fail('ERR ' .. name .. ' must be at most ' .. string.format('%.0f', max) .. (why or ''))
  end
  return n
end

-- floor(a / b) for integers 0 <= a < 2^53, 0 < b: exact (fmod is exact).
local function idiv(a, b)
  return (a - math.fmod(a, b)) / b
end

-- ceil(a / b), same domain.
local function cdiv(a, b)
  local r = math.fmod(a, b)
  local q = (a - r) / b
  if r > 0 then
    q = q + 1
  end
  return q
end

-- floor(r * m / d) and the remainder, for r < d <= 2^52 and m < 2^53: by doubling, so
-- that no intermediate leaves the exact range.
local function muldiv(r, m, d)
  local bits, p = {}, m
  while p > 0 do
    local bit = math.fmod(p, 2)
    bits[#bits + 1] = bit
    p = (p - bit) / 2
  end
  local q, rem = 0, 0
  for i = #bits, 1, -1 do
    q, rem = q * 2, rem * 2
    if rem >= d then
      rem, q = rem - d, q + 1
    end
    if bits[i] == 1 then
      rem = rem + r
      if rem >= d then
        rem, q = rem - d, q + 1
      end
    end
  end
  return q, rem
end

local function max(a, b)
  if a > b then return a end
  return b
end

local function min(a, b)
  if a < b then return a end
  return b
end

-- a - b, never below zero.
local function sub0(a, b)
  if a > b then return a - b end
  return 0
end

-- The decision time in microseconds.
local function clock(override)
  local t = int(override, 'now')
  if t > 0 then
    return t
  end
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- Milliseconds in `micros`, rounded up.
local function ceil_ms(micros)
  return cdiv(micros, 1000)
end

-- The stored table of `key`, or nil. A value this engine did not write is WRONGTYPE,
-- and so is any value at `guard`, the key's own name (the module's limiter, or another
-- value), as the module answers for a key holding another type.
local function load(key, guard)
  if guard and redis.call('EXISTS', guard) == 1 then
    fail(WRONGTYPE_OTHER)
  end
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' and raw.err then
    fail(WRONGTYPE_OTHER)
  end
  if not raw then
    return nil
  end
  local ok, stored = pcall(cmsgpack.unpack, raw)
  if not ok or type(stored) ~= 'table' or type(stored[1]) ~= 'string' then
    fail(WRONGTYPE_OTHER)
  end
  return stored
end

-- Stores `stored` at `key`, expiring at `idle_us` (the moment it equals no key).
local function store(key, stored, idle_us)
  redis.call('SET', key, cmsgpack.pack(stored), 'PXAT', string.format('%.0f', max(ceil_ms(idle_us), 1)))
end

local function wrong_algorithm(name)
  fail('WRONGTYPE the key holds a ' .. name .. ' limiter')
end

-- A decision reply: allowed, limit, remaining, retry_after_ms (-1: never), reset_after_ms.
local function reply(d)
  return { d.allowed and 1 or 0, d.limit, d.remaining, d.retry, d.reset }
end

local ALGORITHMS = {}
