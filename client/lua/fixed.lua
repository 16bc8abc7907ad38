-- Part 4: fixed window aligned to the Unix epoch (redlimit-core fixed_window.rs).
-- State: { end_ms, count }.

local FIXED = { fields = { 'limit', 'window_ms' } }

function FIXED.check(p)
  at_most(p[2], 10000000000000, 'window_ms')
  return p
end

function FIXED.idle(_, s)
  return s[1] * 1000
end

local function end_of_window_at(w, ms)
  return ms - math.fmod(ms, w) + w
end

-- The window at now_ms under policy p of the one stored as (old, s): end_ms, count.
local function fixed_current(p, old, s, now_ms)
  local limit, w = p[1], p[2]
  local end_ms, count = end_of_window_at(w, now_ms), 0
  if old then
    if old[1] == limit and old[2] == w then
      if now_ms < s[1] then end_ms, count = s[1], s[2] end
    else
      local recorded_from = sub0(s[1], old[2])
      local carried_end = min(end_of_window_at(w, recorded_from), s[1])
      if now_ms < carried_end then end_ms, count = carried_end, min(s[2], limit) end
    end
  end
  return end_ms, count
end

function FIXED.decide(p, old, s, now, req)
  local limit = p[1]
  local now_ms = idiv(now, 1000)
  local end_ms, count = fixed_current(p, old, s, now_ms)
  local until_end = ceil_ms(sub0(end_ms * 1000, now))
  if req.cost > limit - count then
    local retry = until_end
    if req.cost > limit then retry = -1 end
    local reset = 0
    if count > 0 then reset = until_end end
    return { allowed = false, limit = limit, remaining = sub0(limit, count), retry = retry, reset = reset }, nil
  end
  local after = count + req.cost
  local reset = 0
  if after > 0 then reset = until_end end
  local d = { allowed = true, limit = limit, remaining = limit - after, retry = 0, reset = reset }
  if req.read_only then return d, nil end
  return d, { end_ms, after }
end

ALGORITHMS.fixed = FIXED
