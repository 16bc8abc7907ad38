-- Part 9: one reservation across token buckets, RL.ALL ... MAXWAIT (redlimit-core
-- reserve.rs). Each bucket can take its cost at the earliest instant its refill covers
-- it; the request acts at T, the latest of them, if T is within MAXWAIT, and every
-- bucket is charged as of T: its deficit d now becomes the line max(d, r(T - now)) + c
-- at now, stored at its anchor max(T, the anchor it had), the latest pending act time.
-- Script bound: as for one bucket's MAXWAIT, the wait is at most what keeps every
-- bucket's borrowing within 2^52 units (a longer MAXWAIT waits that long at most: such
-- a request may be denied where the module would admit it, never the reverse). Costs
-- on one key named twice that sum beyond 2^53 units are refused by name.

local RESERVE = {}

-- A bucket decision: retry in microseconds (nil: never), reset in microseconds.
local function bucket_reply(p, allowed, deficit, retry, reset)
  local retry_ms = -1
  if retry then retry_ms = ceil_ms(retry) end
  local reset_ms = 0
  if deficit > 0 then reset_ms = ceil_ms(reset) end
  return { allowed and 1 or 0, p[1], idiv(sub0(tb_full(p), deficit), tb_unit(p)), retry_ms, reset_ms }
end

-- The standing of limit `limit` against `slot`'s state: its level (tb_level), need
-- (math.huge: beyond 2^53 units), and whether the bucket can ever take the cost (at most
-- its capacity).
local function standing(limit, slot, now)
  local c = slot.current
  local old, s
  if c then
    if c.name ~= 'tokenbucket' then wrong_algorithm(c.name) end
    if c.state[1] >= EXACT then
      fail('ERR costs on one key of a reservation sum beyond what the script engine computes exactly')
    end
    if TB.idle(c.policy, c.state) > now then old, s = c.policy, c.state end
  end
  local p = limit.policy
  local level = tb_level(p, old, s, now)
  local cost, need = limit.req.cost, math.huge
  if cost <= idiv(EXACT, tb_unit(p)) then need = cost * tb_unit(p) end
  return { level = level, deficit = level.deficit, need = need, fits = cost <= p[1] }
end

-- Decides the reservation of `limits` (every one a token bucket), slot_for(k) loading
-- limit k's key at its first limit (into `slots`, each keeping its state as loaded),
-- waiting at most max_wait_ms: allowed and the decisions; when allowed, each changed
-- slot holds its state to store.
function RESERVE.decide(limits, slot_for, slots, now, max_wait_ms)
  for _, limit in ipairs(limits) do
    local p = limit.policy
    max_wait_ms = min(max_wait_ms, idiv(idiv(TB_BOUND - tb_full(p), p[2]), 1000))
  end
  local max_wait = max_wait_ms * 1000
  -- Pass 1: each bucket's earliest instant, a key named twice seeing its earlier charge.
  local waits, denied, act_in = {}, {}, 0
  for k, limit in ipairs(limits) do
    local p, slot = limit.policy, slot_for(k)
    local st = standing(limit, slot, now)
    local wait
    if st.fits then
      -- (need - full) first: at most 0, exact for any deficit.
      wait = 0
      if st.deficit > tb_full(p) - st.need then wait = tb_wait(p, st.level, st.need - tb_full(p)) end
    end
    local reset = tb_wait(p, st.level, 0)
    if not wait then
      denied[k] = bucket_reply(p, false, st.deficit, nil, reset)
      act_in = nil
    elseif wait <= max_wait then
      denied[k] = bucket_reply(p, true, st.deficit, wait, reset)
    else
      denied[k] = bucket_reply(p, false, st.deficit, wait - max_wait, reset)
    end
    if act_in and wait then act_in = max(act_in, wait) end
    local cost = limit.req.cost
    if cost > 0 then
      local pending = math.huge
      if st.level.base + st.need < EXACT then pending = st.level.base + st.need end
      slot.current = { name = 'tokenbucket', policy = p, state = { pending, st.level.anchor } }
    end
  end
  for _, slot in ipairs(slots) do
    slot.current, slot.changed = slot.loaded, false
  end
  if not act_in or act_in > max_wait then return false, denied end
  -- Pass 2: every bucket charged as of now + act_in.
  local act_at = now + act_in
  local decisions = {}
  for k, limit in ipairs(limits) do
    local p, slot = limit.policy, slot_for(k)
    local st = standing(limit, slot, now)
    if limit.req.cost == 0 then
      decisions[k] = bucket_reply(p, true, st.deficit, 0, tb_wait(p, st.level, 0))
    else
      -- Every deficit is finite here: within MAXWAIT's borrowing, at most 2^52.
      local refilled = act_in * p[2]
      -- The deficit left at the act time, exact: (max(d, refilled) - refilled) + need.
      local left = sub0(st.deficit, refilled) + st.need
      if left > tb_full(p) then
        denied[k][1], denied[k][4] = 0, -1
        return false, denied
      end
      local deficit = refilled + left
      decisions[k] = bucket_reply(p, true, deficit, act_in, cdiv(deficit, p[2]))
      -- Kept at the latest pending act time: this one, or a later one already there.
      local state = { left, act_at }
      if st.level.anchor > act_at then state = tb_anchored(p, st.level, deficit) end
      slot.current = { name = 'tokenbucket', policy = p, state = state }
      slot.changed = true
    end
  end
  return true, decisions
end
