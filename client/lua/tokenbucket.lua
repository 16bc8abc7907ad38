-- Part 2: token bucket (redlimit-core token_bucket.rs). One token is refill_ms * 1000
-- units, every microsecond adds refill_tokens units; the state is the deficit (units
-- missing from a full bucket) and when it holds: the last change, or a pending
-- reservation's act time ahead of now, before which the line extrapolates backwards
-- (deficit + refill until then; a clock that moved back sees the same). Script bound: a full bucket
-- plus the borrowing of MAXWAIT spans at most 2^52 units (capacity * refill_ms at most
-- 4503599627370: 1,250,000 tokens at refill_ms = 1 hour), so every sum stays below 2^53.

local TB_BOUND = 4503599627370496 -- 2^52

local function same_policy(a, b)
  for i = 1, #a do
    if a[i] ~= b[i] then return false end
  end
  return true
end

local TB = { fields = { 'capacity', 'refill_tokens', 'refill_ms' } }

function TB.check(p)
  local capacity, refill_tokens, refill_ms = p[1], p[2], p[3]
  at_most(refill_ms, 10000000000000, 'refill_ms')
  local unit = refill_ms * 1000
  at_most(capacity, idiv(TB_BOUND, unit), 'capacity',
    ' when refill_ms is ' .. string.format('%.0f', refill_ms) .. ' on the script engine')
  return p
end

local function tb_unit(p) return p[3] * 1000 end
local function tb_full(p) return p[1] * p[3] * 1000 end

-- The deepest deficit a request may leave: a full bucket plus max_wait_ms of refill.
-- A MAXWAIT whose borrowing would pass the script bound borrows up to the bound: such a
-- request may be denied where the module would admit it, never the reverse (the client
-- asks for the longest wait it can when told to wait without limit).
local function tb_floor(p, max_wait_ms)
  local full = tb_full(p)
  max_wait_ms = min(max_wait_ms, idiv(idiv(TB_BOUND - full, p[2]), 1000))
  return full + max_wait_ms * 1000 * p[2]
end

function TB.idle(p, s)
  return s[2] + cdiv(s[1], p[2])
end

-- units counted in `from`-sized tokens, re-counted in `to`-sized ones, rounded up, and
-- capped at `cap` (a full bucket of the new policy).
local function rescale(units, from, to, cap)
  if from == to then return min(units, cap) end
  local whole = idiv(units, from)
  if whole * to >= cap then return cap end
  local q, rem = muldiv(units - whole * from, to, from)
  if rem > 0 then q = q + 1 end
  return min(whole * to + q, cap)
end

-- The level at now under policy p of the bucket stored as (old, s) (core's level):
-- deficit, the units missing now (math.huge: beyond 2^53, only when the stored time is
-- far ahead: a clock that moved back, a faster policy); anchor, where a new state is
-- kept (the stored time when ahead, else now); base, the deficit at the anchor; behind,
-- the microseconds from now to the anchor. A deficit may reach 2^53 after RL.ADJUST's
-- debt.
local function tb_level(p, old, s, now)
  if not old then return { deficit = 0, anchor = now, base = 0, behind = 0 } end
  local deficit = s[1]
  if not same_policy(old, p) then
    deficit = rescale(deficit, tb_unit(old), tb_unit(p), tb_full(p))
  end
  if s[2] > now then
    local behind = s[2] - now
    local level = { deficit = math.huge, anchor = s[2], base = deficit, behind = behind }
    if behind <= idiv(sub0(EXACT, deficit), p[2]) then
      level.deficit = deficit + behind * p[2]
    end
    return level
  end
  local elapsed = now - s[2]
  if elapsed >= cdiv(deficit, p[2]) then
    deficit = 0
  else
    deficit = deficit - elapsed * p[2]
  end
  return { deficit = deficit, anchor = now, base = deficit, behind = 0 }
end

-- Microseconds until the refill covers the level's deficit plus x (x >= -deficit, at
-- most 0 when the deficit is math.huge): exact either way.
local function tb_wait(p, level, x)
  if level.deficit < math.huge then return cdiv(level.deficit + x, p[2]) end
  local y = level.base + x
  if y >= 0 then return level.behind + cdiv(y, p[2]) end
  return level.behind - idiv(-y, p[2])
end

-- The state to store for a finite deficit measured now, kept at the level's anchor.
local function tb_anchored(p, level, deficit)
  return { sub0(deficit, level.behind * p[2]), level.anchor }
end

function TB.decide(p, old, s, now, req)
  local unit, full = tb_unit(p), tb_full(p)
  local floor = tb_floor(p, req.max_wait)
  local level = tb_level(p, old, s, now)
  local deficit = level.deficit
  local function decision(allowed, d, retry, reset)
    return {
      allowed = allowed,
      limit = p[1],
      remaining = idiv(sub0(full, d), unit),
      retry = retry,
      reset = (d == 0) and 0 or ceil_ms(reset),
    }
  end
  -- need = cost * unit, computed only when it fits under the floor.
  local need
  if req.cost <= idiv(floor, unit) then need = req.cost * unit end
  if not need or deficit > floor - need then
    local retry = -1
    -- (need - floor) first: exact for a deficit up to 2^53 and beyond.
    if need then retry = ceil_ms(tb_wait(p, level, need - floor)) end
    return decision(false, deficit, retry, tb_wait(p, level, 0)), nil
  end
  local after = deficit + need
  local retry = 0
  if after > full then retry = ceil_ms(cdiv(after - full, p[2])) end
  local d = decision(true, after, retry, cdiv(after, p[2]))
  if req.read_only then return d, nil end
  return d, tb_anchored(p, level, after)
end

ALGORITHMS.tokenbucket = TB
