-- Part 6: exact sliding window over a log of admitted requests (redlimit-core
-- sliding_log.rs). State: { last_ms, { time_ms, cost, time_ms, cost, ... } }, oldest
-- first; requests of the same millisecond share an entry (nothing observable depends on
-- how they are split). Script bound: limit <= 1000, so a log holds at most 1000 entries
-- and one call stays well under a millisecond of Lua.

local SLIDING = { fields = { 'limit', 'window_ms' } }
local MAX_SCRIPT_SLIDING_LIMIT = 1000

function SLIDING.check(p)
  if p[1] > MAX_SCRIPT_SLIDING_LIMIT then
    fail('ERR limit must be at most ' .. MAX_SCRIPT_SLIDING_LIMIT ..
      ' for an exact log on the script engine (use APPROX above)')
  end
  at_most(p[2], 10000000000000, 'window_ms')
  return p
end

function SLIDING.idle(p, s)
  return (s[1] + p[2]) * 1000
end

-- The entries still in the window at now_ms, their total and the last time.
local function without_expired(s, now_ms, w)
  local entries, kept, total = s[2], {}, 0
  for i = 1, #entries, 2 do
    if entries[i] + w > now_ms then
      kept[#kept + 1] = entries[i]
      kept[#kept + 1] = entries[i + 1]
      total = total + entries[i + 1]
    end
  end
  if total == 0 then return { last = 0, total = 0, entries = {} } end
  return { last = s[1], total = total, entries = kept }
end

-- The newest entries worth at most `limit`.
local function capped(log, limit)
  if log.total <= limit then return log end
  local entries, budget, kept = log.entries, limit, {}
  for i = #entries - 1, 1, -2 do
    if budget == 0 then break end
    local cost = min(entries[i + 1], budget)
    budget = budget - cost
    table.insert(kept, 1, cost)
    table.insert(kept, 1, entries[i])
  end
  return { last = kept[#kept - 1], total = limit - budget, entries = kept }
end

local function with_entry(log, now_ms, cost)
  local entries = log.entries
  local last = log.last
  if #entries == 0 then last = now_ms end
  local at = max(now_ms, last)
  if #entries > 0 and entries[#entries - 1] == at then
    entries[#entries] = entries[#entries] + cost
  else
    entries[#entries + 1] = at
    entries[#entries + 1] = cost
  end
  return { last = at, total = log.total + cost, entries = entries }
end

local function time_until_room(log, excess, now_ms, w)
  local freed, entries = 0, log.entries
  for i = 1, #entries, 2 do
    freed = freed + entries[i + 1]
    if freed >= excess then return sub0(entries[i] + w, now_ms) end
  end
  return 0
end

local function log_reset(log, now_ms, w)
  if log.total == 0 then return 0 end
  return sub0(log.last + w, now_ms)
end

-- The log at now_ms under policy p of the one stored as (old, s).
local function sliding_current(p, old, s, now_ms)
  if not old then return { last = 0, total = 0, entries = {} } end
  local log = without_expired(s, now_ms, p[2])
  if not (old[1] == p[1] and old[2] == p[2]) then log = capped(log, p[1]) end
  return log
end

function SLIDING.decide(p, old, s, now, req)
  local limit, w = p[1], p[2]
  local now_ms = idiv(now, 1000)
  local log = sliding_current(p, old, s, now_ms)
  if req.cost > limit - log.total then
    local retry = -1
    if req.cost <= limit then
      retry = time_until_room(log, log.total + req.cost - limit, now_ms, w)
    end
    return { allowed = false, limit = limit, remaining = sub0(limit, log.total), retry = retry,
      reset = log_reset(log, now_ms, w) }, nil
  end
  if req.cost > 0 then log = with_entry(log, now_ms, req.cost) end
  local d = { allowed = true, limit = limit, remaining = sub0(limit, log.total), retry = 0,
    reset = log_reset(log, now_ms, w) }
  if req.read_only then return d, nil end
  return d, { log.last, log.entries }
end

ALGORITHMS.sliding = SLIDING
