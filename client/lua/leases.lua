-- Part 7: distributed concurrency limit with leases (redlimit-core concurrency.rs).
-- State: { { lease_id, expires_ms, lease_id, expires_ms, ... } }.

local LEASES = { fields = { 'limit', 'lease_ms' } }

function LEASES.check(p)
  at_most(p[1], 1000, 'limit')
  at_most(p[2], 10000000000000, 'lease_ms')
  return p
end

local function last_expiry(held)
  local last = 0
  for i = 2, #held, 2 do last = max(last, held[i]) end
  return last
end

function LEASES.idle(_, s)
  return last_expiry(s[1]) * 1000
end

local function live_leases(s, now_ms)
  local held = {}
  if s then
    for i = 1, #s[1], 2 do
      if s[1][i + 1] > now_ms then
        held[#held + 1] = s[1][i]
        held[#held + 1] = s[1][i + 1]
      end
    end
  end
  return held
end

local function time_until_free(limit, held, now_ms)
  local expiries = {}
  for i = 2, #held, 2 do expiries[#expiries + 1] = held[i] end
  if #expiries == 0 then return 0 end
  table.sort(expiries)
  local index = min(sub0(#expiries, limit), #expiries - 1)
  return sub0(expiries[index + 1], now_ms)
end

local function lease_decision(limit, allowed, held, now_ms, retry)
  return {
    allowed = allowed,
    limit = limit,
    remaining = sub0(limit, #held / 2),
    retry = retry,
    reset = sub0(last_expiry(held), now_ms),
  }
end

local function lease_expiry(p, now)
  return cdiv(now, 1000) + p[2]
end

function LEASES.acquire(p, s, now, id)
  local limit = p[1]
  local now_ms = idiv(now, 1000)
  local held = live_leases(s, now_ms)
  local expires = lease_expiry(p, now)
  local found = false
  for i = 1, #held, 2 do
    if held[i] == id then
      held[i + 1] = max(held[i + 1], expires)
      found = true
      break
    end
  end
  if not found then
    if #held / 2 < limit then
      held[#held + 1] = id
      held[#held + 1] = expires
    else
      return lease_decision(limit, false, held, now_ms, time_until_free(limit, held, now_ms)), nil
    end
  end
  return lease_decision(limit, true, held, now_ms, 0), { held }
end

-- RL.STATUS on a lease key: the answer for a new holder.
function LEASES.decide(p, _, s, now, _)
  local limit = p[1]
  local now_ms = idiv(now, 1000)
  local held = live_leases(s, now_ms)
  if #held / 2 < limit then
    held[#held + 1] = ''
    held[#held + 1] = lease_expiry(p, now)
    return lease_decision(limit, true, held, now_ms, 0), nil
  end
  return lease_decision(limit, false, held, now_ms, time_until_free(limit, held, now_ms)), nil
end

ALGORITHMS.concurrency = LEASES
