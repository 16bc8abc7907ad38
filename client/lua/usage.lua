-- Part 10: usage counters for reporting, RL.USAGE.ADD and RL.USAGE (redlimit-core
-- usage.rs). A fixed ring of `buckets` epoch-aligned buckets of `bucket_ms`; an amount
-- recorded before the newest bucket (a clock stepped back) counts in the newest one.
-- State: { newest_ms, { amounts, oldest first, the last in the bucket at newest_ms } },
-- canonical as the module's: no leading zero, never empty, at most `buckets` long.
-- Script bound: amounts and totals saturate at 2^53 - 1 (the module's at 2^63 - 1).

local USAGE = { fields = { 'bucket_ms', 'buckets' } }

function USAGE.check(p)
  at_most(p[1], 10000000000000, 'bucket_ms')
  at_most(p[2], 1440, 'buckets')
  if p[1] * p[2] > 10000000000000 then
    fail('ERR bucket_ms must be such that bucket_ms * buckets is at most 10000000000000')
  end
  return p
end

function USAGE.idle(p, s)
  return (s[1] + p[1] * p[2]) * 1000
end

local function usage_add_amounts(a, b)
  local sum = a + b
  if sum >= EXACT then return EXACT - 1 end
  return sum
end

-- The bucket that counts at now: the one containing now, or the newest recorded one
-- when the clock moved back before it.
local function usage_current(p, s, now)
  local now_ms = idiv(now, 1000)
  local bucket = now_ms - math.fmod(now_ms, p[1])
  if s and s[1] > bucket then return s[1] end
  return bucket
end

-- The amount recorded in the bucket starting at `start` (0 when none).
local function usage_amount_at(p, s, start)
  if start > s[1] then return 0 end
  local amounts = s[2]
  local index = #amounts - (s[1] - start) / p[1]
  if index < 1 then return 0 end
  return amounts[index]
end

-- The sum of the ring's amounts at now.
function USAGE.total(p, s, now)
  local oldest = usage_current(p, s, now) - (p[2] - 1) * p[1]
  local amounts, total = s[2], 0
  for i = 1, #amounts do
    if s[1] - (#amounts - i) * p[1] >= oldest then
      total = usage_add_amounts(total, amounts[i])
    end
  end
  return total
end

-- Every bucket of the ring at now, oldest first: bucket_start_ms, amount, ...
function USAGE.read(p, s, now)
  local current = usage_current(p, s, now)
  local out = {}
  for i = p[2] - 1, 0, -1 do
    local start = current - i * p[1]
    if start >= 0 then
      out[#out + 1] = start
      out[#out + 1] = usage_amount_at(p, s, start)
    end
  end
  return out
end

-- The counter `s` (nil: none) with `amount` (above 0) added at now.
function USAGE.add(p, s, now, amount)
  local current = usage_current(p, s, now)
  local amounts = {}
  if s then
    local moved = (current - s[1]) / p[1]
    if moved < p[2] then
      for i = 1, #s[2] do amounts[i] = s[2][i] end
      for _ = 1, moved do amounts[#amounts + 1] = 0 end
    end
  end
  if #amounts == 0 then
    amounts[1] = amount
  else
    amounts[#amounts] = usage_add_amounts(amounts[#amounts], amount)
  end
  -- Keep the last `buckets`, then drop the zeros they start with (not the last one).
  local first = max(1, #amounts - p[2] + 1)
  while first < #amounts and amounts[first] == 0 do first = first + 1 end
  local kept = {}
  for i = first, #amounts do kept[#kept + 1] = amounts[i] end
  return { current, kept }
end

-- RL.STATUS on a counter: recording is never refused and has no limit.
function USAGE.decide(p, _, s, now, _)
  return { allowed = true, limit = 0, remaining = 0, retry = 0,
    reset = ceil_ms(sub0(USAGE.idle(p, s), now)) }, nil
end

ALGORITHMS.usage = USAGE
