-- Part 5: approximate sliding window, two epoch-aligned fixed windows (redlimit-core
-- sliding_counter.rs). State: { start_ms, previous, current }. Script bound:
-- limit * window_ms <= 2^51, so that every weighted sum is exact.

local APPROX = { fields = { 'limit', 'window_ms' } }

function APPROX.check(p)
  at_most(p[1], 1099511627776, 'limit')
  at_most(p[2], 1099511627776, 'window_ms')
  at_most(p[1], idiv(BOUND, p[2]), 'limit',
    ' when window_ms is ' .. string.format('%.0f', p[2]) .. ' on the script engine')
  return p
end

local function approx_idle_ms(w, pair)
  if pair[3] > 0 then return pair[1] + 2 * w end
  if pair[2] > 0 then return pair[1] + w end
  return 0
end

function APPROX.idle(p, s)
  return approx_idle_ms(p[2], s) * 1000
end

local function start_of(w, ms)
  return ms - math.fmod(ms, w)
end

-- The pair at now_ms under this window length.
local function approx_current(w, pair, now_ms)
  local start = start_of(w, now_ms)
  if pair then
    if pair[1] >= start then return { pair[1], pair[2], pair[3] } end
    if pair[1] + w == start then return { start, pair[3], 0 } end
  end
  return { start, 0, 0 }
end

local function carried_over(p, old, s, now_ms)
  local limit, w = p[1], p[2]
  if not old then return approx_current(w, nil, now_ms) end
  if old[1] == limit and old[2] == w then return approx_current(w, s, now_ms) end
  if old[2] == w then
    local pair = approx_current(w, s, now_ms)
    return { pair[1], min(pair[2], limit), min(pair[3], limit) }
  end
  local moved = { { sub0(s[1], old[2]), s[2] }, { s[1], s[3] } }
  local latest = 0
  for _, m in ipairs(moved) do
    if m[2] > 0 then latest = max(latest, start_of(w, m[1])) end
  end
  local start = max(start_of(w, now_ms), latest)
  local previous, current = 0, 0
  for _, m in ipairs(moved) do
    local from = start_of(w, m[1])
    if from == start then
      current = current + m[2]
    elseif from + w == start then
      previous = previous + m[2]
    end
  end
  return { start, min(previous, limit), min(current, limit) }
end

local function scaled(w, pair, elapsed)
  return pair[2] * (w - min(elapsed, w)) + pair[3] * w
end

local function approx_wait(limit, w, pair, elapsed, cost)
  local budget = limit * w
  if pair[2] > 0 and (pair[3] + cost) * w <= budget then
    local excess = scaled(w, pair, elapsed) + cost * w - budget
    local wait = cdiv(excess, pair[2])
    if elapsed + wait < w then return wait end
  end
  local to_next = w - elapsed
  local next = { 0, pair[3], 0 }
  if next[2] == 0 then return to_next end
  if cost * w <= budget then
    local excess = sub0(scaled(w, next, 0) + cost * w, budget)
    local wait = cdiv(excess, next[2])
    if wait < w then return to_next + wait end
  end
  return to_next + w
end

function APPROX.decide(p, old, s, now, req)
  local limit, w = p[1], p[2]
  local now_ms = idiv(now, 1000)
  local pair = carried_over(p, old, s, now_ms)
  local function decision(allowed, q, retry)
    local elapsed = sub0(now_ms, q[1])
    local used = cdiv(scaled(w, q, elapsed), w)
    return {
      allowed = allowed,
      limit = limit,
      remaining = sub0(limit, used),
      retry = retry,
      reset = sub0(approx_idle_ms(w, q), now_ms),
    }
  end
  local elapsed = sub0(now_ms, pair[1])
  if req.cost > limit or scaled(w, pair, elapsed) + req.cost * w > limit * w then
    local retry = -1
    if req.cost <= limit then
      retry = sub0(pair[1], now_ms) + approx_wait(limit, w, pair, elapsed, req.cost)
    end
    return decision(false, pair, retry), nil
  end
  local after = { pair[1], pair[2], pair[3] + req.cost }
  local d = decision(true, after, 0)
  if req.read_only then return d, nil end
  return d, after
end

ALGORITHMS['sliding-approx'] = APPROX
