-- Part 3: GCRA as redis-cell's CL.THROTTLE computes it (redlimit-core throttle.rs).
-- Nanoseconds do not fit a double at today's epoch, so the TAT is stored as whole
-- microseconds plus a nanosecond remainder, and every computation is relative to now.
-- Script bound: the tolerance interval * (max_burst + 1) is at most 2^52 ns (52 days).

local GCRA = { fields = { 'max_burst', 'count_per_period', 'period' } }
local TOLERANCE_BOUND = 4503599627370496 -- 2^52

local function interval_ns(p)
  -- As redis-cell: in f64, truncated (period * 10^9 is exact in u64 and rounds once).
  return math.floor((p[3] * 1000000000) / p[2])
end

function GCRA.check(p)
  at_most(p[3], 9223372036, 'period_s')
  local interval = interval_ns(p)
  if interval == 0 then
    fail('ERR count_per_period must be at most ' .. string.format('%.0f', p[3] * 1000000000) .. ' (one per nanosecond)')
  end
  local most = idiv(TOLERANCE_BOUND, interval) - 1
  at_most(p[1], most, 'max_burst', ' at this rate on the script engine')
  return p
end

local function tolerance_ns(p)
  return interval_ns(p) * (p[1] + 1)
end

-- State: { tat_us, tat_sub_ns }. Live while ceil(tat / 1000 ns) > now.
function GCRA.idle(_, s)
  if s[2] > 0 then return s[1] + 1 end
  return s[1]
end

-- redis-cell's seconds: whole seconds, plus one when a whole millisecond is left over.
local function cell_seconds(ns)
  local s = idiv(ns, 1000000000)
  if idiv(math.fmod(ns, 1000000000), 1000000) > 0 then s = s + 1 end
  return s
end

-- The raw decision in nanoseconds: allowed, ttl_ns, retry_ns (nil: never), new state.
-- How far ahead of now (ns) the TAT stored as (old, s) lies under policy p (core's
-- current_tat, less now).
local function gcra_ahead(p, old, s, now)
  if not old then return 0 end
  local d = (s[1] - now) * 1000 + s[2]
  if d < 0 then d = 0 end
  if not (old[1] == p[1] and old[2] == p[2] and old[3] == p[3]) then
    local cap = (s[1] - now) * 1000 + s[2] - tolerance_ns(old) + tolerance_ns(p)
    d = min(d, max(cap, 0))
  end
  return d
end

function GCRA.raw(p, old, s, now, req)
  local interval, tolerance = interval_ns(p), tolerance_ns(p)
  local d = gcra_ahead(p, old, s, now)
  local increment
  if req.cost <= idiv(tolerance, interval) then increment = req.cost * interval end
  if not increment or d + increment > tolerance then
    local retry
    if increment then retry = d + increment - tolerance end
    return false, d, retry, nil
  end
  local new_d = d + increment
  local state
  if not req.read_only then
    state = { now + idiv(new_d, 1000), math.fmod(new_d, 1000) }
  end
  return true, new_d, 0, state
end

function GCRA.remaining(p, ttl)
  local next = tolerance_ns(p) - ttl
  if next < 0 then return 0 end
  local interval = interval_ns(p)
  if interval >= 1000 then
    next, interval = idiv(next, 1000), idiv(interval, 1000)
  end
  return math.floor(next / interval)
end

-- redis-cell's reply: limited, limit, remaining, retry_after_s (-1), reset_after_s.
function GCRA.cell_reply(p, allowed, ttl, retry)
  local retry_s = -1
  if not allowed and retry then retry_s = cell_seconds(retry) end
  return { allowed and 0 or 1, p[1] + 1, GCRA.remaining(p, ttl), retry_s, cell_seconds(ttl) }
end

-- The decision in milliseconds (RL.STATUS).
function GCRA.decide(p, old, s, now, req)
  local allowed, ttl, retry, state = GCRA.raw(p, old, s, now, req)
  local retry_ms = -1
  if retry then retry_ms = cdiv(retry, 1000000) end
  return {
    allowed = allowed,
    limit = p[1] + 1,
    remaining = GCRA.remaining(p, ttl),
    retry = retry_ms,
    reset = cdiv(ttl, 1000000),
  }, state
end

ALGORITHMS.throttle = GCRA
