-- Part 8: RL.ADJUST, a correction after the fact (redlimit-core adjust.rs). A refund
-- never lifts a limiter above full (with SINCE, never more than charging less at that
-- time would have left); a charge is recorded into a bounded debt (token bucket: down
-- to -capacity tokens, throttle: two bursts ahead; windows stop at the limit). Each
-- function takes the policy p, the stored (old, s) or nil, now and the adjustment
-- { refund = bool, n = units (math.huge: 2^53 or more), since = ms }, and returns the
-- state to store, or nil when nothing changed.

local ADJUST = {}
local HALF = 4503599627370496 -- 2^52

-- Units a refund of n units of `unit` takes back from v (at most 2^52), less `lost`
-- (exact, at most 2^52; nil: beyond 2^52, more than v): min(v, n * unit - lost), at
-- least 0. Exact: a product beyond 2^53 is never formed.
local function refund_units(v, n, unit, lost)
  if lost then
    if n > idiv(EXACT, unit) then return v end
    return min(v, sub0(n * unit, lost))
  end
  local most = idiv(HALF, unit)
  if n <= most then return 0 end
  fail('ERR delta must be at least -' .. string.format('%.0f', most) ..
    ' for a refund with this SINCE on the script engine')
end

-- v plus n units of `unit`, at most max(v, ceiling).
local function charged_units(v, n, unit, ceiling)
  if v >= ceiling then return v end
  if n >= cdiv(ceiling - v, unit) then return ceiling end
  return v + n * unit
end

-- since * per_ms when it is at most 2^52 (exact), else nil; per_ms = a * b.
local function lost_in(since, a, b)
  if since <= idiv(idiv(HALF, a), b) then return since * b * a end
  return nil
end

-- The deficit at the anchor after a refund of n units of `unit` less `lost`, from a
-- deficit v now (at most 2^52) that is `base` at the anchor (v less the refill until
-- then, `ahead`): min(base, v + lost - n * unit) at least 0, i.e. the refund less the
-- refill until the anchor. Exact: v + lost is at most 2^53 (nil lost: as refund_units).
local function refunded_base(base, v, n, unit, lost)
  if not lost then return base - min(base, refund_units(base, n, unit, nil)) end
  if n > idiv(EXACT, unit) then return 0 end
  return min(base, sub0(v + lost, n * unit))
end

function ADJUST.tokenbucket(p, old, s, now, adj)
  local unit, full = tb_unit(p), tb_full(p)
  local level = tb_level(p, old, s, now)
  local deficit, base = level.deficit, level.base
  local after
  if adj.refund then
    -- In debt (reservations pending) a refund is dropped: see core adjust.rs.
    if deficit > full then return nil end
    -- A bucket charged less may have been full since the charge and until the anchor
    -- (the latest pending act time): that refill does not come back.
    after = refunded_base(base, deficit, adj.n, unit, lost_in(adj.since, p[2], 1000))
  else
    if deficit == math.huge then return nil end
    after = tb_anchored(p, level, charged_units(deficit, adj.n, unit, 2 * full))[1]
  end
  if after == base then return nil end
  return { after, level.anchor }
end

function ADJUST.throttle(p, old, s, now, adj)
  local interval, tolerance = interval_ns(p), tolerance_ns(p)
  -- Two bursts of debt must stay within 2^52 ns.
  at_most(p[1], idiv(HALF / 2, interval) - 1, 'max_burst', ' at this rate for RL.ADJUST on the script engine')
  local ahead = gcra_ahead(p, old, s, now)
  local after
  if adj.refund then
    after = ahead - refund_units(ahead, adj.n, interval, lost_in(adj.since, 1000000, 1))
  else
    after = charged_units(ahead, adj.n, interval, 2 * tolerance)
  end
  if after == ahead then return nil end
  return { now + idiv(after, 1000), math.fmod(after, 1000) }
end

function ADJUST.fixed(p, old, s, now, adj)
  local now_ms = idiv(now, 1000)
  local end_ms, count = fixed_current(p, old, s, now_ms)
  local after
  if adj.refund then
    -- A charge counted in a window that has ended left with it.
    if sub0(now_ms, adj.since) >= sub0(end_ms, p[2]) then
      after = count - min(count, adj.n)
    else
      after = count
    end
  else
    after = min(count + adj.n, max(count, p[1]))
  end
  if after == count then return nil end
  return { end_ms, after }
end

-- The log without its oldest `units` (fewer than its total: else empty).
local function refunded(log, units)
  local entries, left = log.entries, units
  for i = 1, #entries, 2 do
    if entries[i + 1] > left then
      local kept = { entries[i], entries[i + 1] - left }
      for j = i + 2, #entries do kept[#kept + 1] = entries[j] end
      return { last = log.last, total = log.total - units, entries = kept }
    end
    left = left - entries[i + 1]
  end
  return { last = 0, total = 0, entries = {} }
end

function ADJUST.sliding(p, old, s, now, adj)
  local now_ms = idiv(now, 1000)
  local log = sliding_current(p, old, s, now_ms)
  if adj.refund and adj.n > 0 and log.total > 0 then
    log = refunded(log, adj.n)
  elseif not adj.refund and adj.n > 0 and log.total < p[1] then
    log = with_entry(log, now_ms, min(adj.n, p[1] - log.total))
  else
    return nil
  end
  return { log.last, log.entries }
end

ADJUST['sliding-approx'] = function(p, old, s, now, adj)
  local now_ms = idiv(now, 1000)
  local pair = carried_over(p, old, s, now_ms)
  local start, previous, current = pair[1], pair[2], pair[3]
  local n = adj.n
  if adj.refund then
    -- From the window the charge was counted in: the current one, then the previous
    -- one when its time is unknown; nothing when that window has slid out.
    local charged_ms = sub0(now_ms, adj.since)
    if charged_ms >= start then
      local from_current = min(n, current)
      local rest = 0
      if adj.since == 0 then rest = n - from_current end
      current, previous = current - from_current, previous - min(rest, previous)
    elseif charged_ms + p[2] >= start then
      previous = previous - min(n, previous)
    end
  else
    current = min(current + n, max(current, p[1]))
  end
  if previous == pair[2] and current == pair[3] then return nil end
  return { start, previous, current }
end

-- An RL.ADJUST delta (negative refunds, at most 2^62 either way) and SINCE.
local function adjustment(raw, since_raw)
  local message = 'ERR delta must be an integer between -4611686018427387904 and 4611686018427387904'
  local refund = string.sub(raw, 1, 1) == '-'
  local digits = raw
  if refund then digits = string.sub(raw, 2) end
  if not string.match(digits, '^%d+$') then fail(message) end
  digits = string.gsub(digits, '^0+(%d)', '%1')
  if #digits > 19 or (#digits == 19 and digits > '4611686018427387904') then fail(message) end
  local n = tonumber(digits)
  if n >= EXACT then n = math.huge end
  local since = at_most(int(since_raw, 'SINCE'), 10000000000000, 'SINCE')
  return { refund = refund, n = n, since = since }
end
