-- Part 11: the operations. ARGV[1] names one, ARGV[2] is the time override, the rest
-- are its arguments (client/lua/README.md lists each layout).

-- The live limiter in `stored` at now (nil when absent or idle): its algorithm's name,
-- policy and state.
local function live(stored, now)
  if not stored then return nil end
  local alg = ALGORITHMS[stored[1]]
  if not alg then fail(WRONGTYPE_OTHER) end
  local n = #alg.fields
  local policy, state = {}, {}
  for i = 1, n do policy[i] = stored[i + 1] end
  for i = n + 2, #stored do state[#state + 1] = stored[i] end
  if alg.idle(policy, state) <= now then return nil end
  return { name = stored[1], policy = policy, state = state }
end

local function encode(name, policy, state)
  local stored = { name }
  for _, v in ipairs(policy) do stored[#stored + 1] = v end
  for _, v in ipairs(state) do stored[#stored + 1] = v end
  return stored
end

-- A cost: at most 2^62 as on the module; a cost of 2^53 or more is above every limit
-- the scripts accept, so it decides exactly as 2^53 - 1 does (denied, never).
local function cost_of(value, name)
  if type(value) == 'string' and string.match(value, '^%d+$') then
    local digits = string.gsub(value, '^0+(%d)', '%1')
    if #digits > 19 or (#digits == 19 and digits > '4611686018427387904') then
      fail('ERR ' .. name .. ' must be at most 4611686018427387904')
    end
    if #digits >= 16 and tonumber(digits) >= EXACT then
      return EXACT - 1
    end
  end
  return int(value, name)
end

local function request(cost_arg, peek_arg, max_wait_arg, cost_name)
  local cost = cost_of(cost_arg, cost_name or 'COST')
  local peek = peek_arg == '1'
  return {
    cost = cost,
    peek = peek,
    max_wait = int(max_wait_arg or '0', 'MAXWAIT'),
    read_only = peek or cost == 0,
  }
end

-- A policy of algorithm `name` from ARGV[i..]: its numbers, checked.
local function policy_at(name, i)
  local alg = ALGORITHMS[name]
  local p = {}
  for j, field in ipairs(alg.fields) do
    if j == 1 and name == 'throttle' then
      p[j] = int(ARGV[i + j - 1], field == 'max_burst' and 'max_burst' or field)
    else
      local arg_name = field
      if name == 'throttle' and field == 'period' then arg_name = 'period_s' end
      p[j] = positive(ARGV[i + j - 1], arg_name)
    end
  end
  return alg.check(p)
end

-- One decision of algorithm `name` against `current` (a live limiter or nil).
local function decide(name, p, current, now, req)
  if current and current.name ~= name then wrong_algorithm(current.name) end
  local alg = ALGORITHMS[name]
  if current then return alg.decide(p, current.policy, current.state, now, req) end
  return alg.decide(p, nil, nil, now, req)
end

-- The guard (original name) of limiter key `k` of `n`, when the call has guards.
local function guard(k, n)
  if #KEYS == 2 * n then return KEYS[n + k] end
  return nil
end

local OPS = {}

-- decide: name, <policy numbers>, cost, peek, max_wait.
function OPS.decide(now)
  local name = ARGV[3]
  local alg = ALGORITHMS[name]
  if not alg or name == 'concurrency' or name == 'usage' then fail('ERR unknown algorithm') end
  local p = policy_at(name, 4)
  local i = 4 + #alg.fields
  local req = request(ARGV[i], ARGV[i + 1], ARGV[i + 2], name == 'throttle' and 'quantity' or 'COST')
  if name ~= 'tokenbucket' and req.max_wait > 0 then fail('ERR syntax error near MAXWAIT') end
  local key = KEYS[1]
  local current = live(load(key, guard(1, 1)), now)
  if name == 'throttle' then
    if current and current.name ~= name then wrong_algorithm(current.name) end
    local allowed, ttl, retry, state
    if current then
      allowed, ttl, retry, state = GCRA.raw(p, current.policy, current.state, now, req)
    else
      allowed, ttl, retry, state = GCRA.raw(p, nil, nil, now, req)
    end
    if state then store(key, encode(name, p, state), GCRA.idle(p, state)) end
    return GCRA.cell_reply(p, allowed, ttl, retry)
  end
  local d, state = decide(name, p, current, now, req)
  if state then store(key, encode(name, p, state), alg.idle(p, state)) end
  return reply(d)
end

-- all: peek, cost option name (COST or COSTS), max_wait (ms; above 0 a reservation
-- across token buckets, client/lua/reserve.lua), then per key: name, n1, n2,
-- n3 ("0" when the policy has two), cost. Every policy is checked before any cost, as
-- the module parses them; a zero cost only asks that limit.
function OPS.all(now)
  local peek, cost_name = ARGV[3] == '1', ARGV[4]
  if cost_name ~= 'COST' and cost_name ~= 'COSTS' then fail('ERR unknown cost option') end
  local n = (#ARGV - 5) / 5
  local limits = {}
  for k = 1, n do
    local base = 6 + (k - 1) * 5
    local name = ARGV[base]
    if not ALGORITHMS[name] or name == 'concurrency' or name == 'throttle' or name == 'usage' then
      fail('ERR unknown policy')
    end
    limits[k] = { name = name, policy = policy_at(name, base + 1) }
  end
  local read_only = true
  for k = 1, n do
    local cost = cost_of(ARGV[6 + (k - 1) * 5 + 4], cost_name)
    limits[k].req = { cost = cost, peek = false, max_wait = 0, read_only = cost == 0 }
    if cost > 0 then read_only = peek end
  end
  local max_wait = at_most(int(ARGV[5], 'MAXWAIT'), 10000000000000, 'MAXWAIT')
  if max_wait > 0 then
    local shown = { fixed = 'FIXED', sliding = 'SLIDING', ['sliding-approx'] = 'SLIDING APPROX' }
    for k, limit in ipairs(limits) do
      if limit.name ~= 'tokenbucket' then
        fail('ERR MAXWAIT must be 0 unless every policy is a TOKENBUCKET (policy ' .. k .. ' is ' ..
          shown[limit.name] .. ': a window cannot hold a reservation exactly)')
      end
    end
  end
  local slots, by_key = {}, {}
  local function slot_for(k)
    local key = KEYS[k]
    local slot = by_key[key]
    if not slot then
      local current = live(load(key, guard(k, n)), now)
      slot = { key = key, current = current, loaded = current, changed = false }
      slots[#slots + 1] = slot
      by_key[key] = slot
    end
    return slot
  end
  local allowed, decisions = true, {}
  if max_wait > 0 then
    allowed, decisions = RESERVE.decide(limits, slot_for, slots, now, max_wait)
  else
    for k, limit in ipairs(limits) do
      local slot = slot_for(k)
      local d, state = decide(limit.name, limit.policy, slot.current, now, limit.req)
      decisions[k] = reply(d)
      if not d.allowed then allowed = false end
      if state then
        slot.current = { name = limit.name, policy = limit.policy, state = state }
        slot.changed = true
      end
    end
  end
  if allowed and not read_only then
    for _, slot in ipairs(slots) do
      if slot.changed then
        local c = slot.current
        store(slot.key, encode(c.name, c.policy, c.state), ALGORITHMS[c.name].idle(c.policy, c.state))
      end
    end
  end
  local out = { allowed and 1 or 0 }
  for _, d in ipairs(decisions) do out[#out + 1] = d end
  return out
end

-- adjust: delta, since (ms; "0" when not given), then optionally the policy: name, n1,
-- n2, n3 ("0" when it has two). Replies as RL.ADJUST: what a request of cost 1 would
-- get afterwards, nil when the key is absent or idle and no policy was given.
function OPS.adjust(now)
  local adj = adjustment(ARGV[3], ARGV[4])
  local name, p = ARGV[5], nil
  if name then
    if not ADJUST[name] then fail('ERR unknown policy') end
    p = policy_at(name, 6)
  end
  local key = KEYS[1]
  local current = live(load(key, guard(1, 1)), now)
  if not p then
    if not current then return false end
    name, p = current.name, current.policy
  end
  if current and current.name ~= name then wrong_algorithm(current.name) end
  if not ADJUST[name] then wrong_algorithm(name) end
  local old, s
  if current then old, s = current.policy, current.state end
  local state = ADJUST[name](p, old, s, now, adj)
  local alg = ALGORITHMS[name]
  local peek = { cost = 1, peek = true, max_wait = 0, read_only = true }
  if state then
    store(key, encode(name, p, state), alg.idle(p, state))
    return reply((alg.decide(p, p, state, now, peek)))
  end
  return reply((alg.decide(p, old, s, now, peek)))
end

-- acquire: limit, lease_ms, lease_id.
function OPS.acquire(now)
  local p = LEASES.check({ positive(ARGV[3], 'limit'), positive(ARGV[4], 'lease_ms') })
  local id = ARGV[5]
  if #id > 256 then fail('ERR lease_id must be at most 256 bytes') end
  local key = KEYS[1]
  local current = live(load(key, guard(1, 1)), now)
  if current and current.name ~= 'concurrency' then wrong_algorithm(current.name) end
  local d, state = LEASES.acquire(p, current and current.state, now, id)
  if state then store(key, encode('concurrency', p, state), LEASES.idle(p, state)) end
  return reply(d)
end

-- release: lease_id.
function OPS.release(now)
  local key, id = KEYS[1], ARGV[3]
  local stored = load(key, guard(1, 1))
  local current = live(stored, now)
  if not current then
    if stored then redis.call('DEL', key) end
    return 0
  end
  if current.name ~= 'concurrency' then wrong_algorithm(current.name) end
  local all = current.state[1]
  local held = live_leases(current.state, idiv(now, 1000))
  local left, released = {}, 0
  for i = 1, #held, 2 do
    if held[i] == id then
      released = 1
    else
      left[#left + 1] = held[i]
      left[#left + 1] = held[i + 1]
    end
  end
  if #left < #all then
    if #left == 0 then
      redis.call('DEL', key)
    else
      store(key, encode('concurrency', current.policy, { left }), last_expiry(left) * 1000)
    end
  end
  return released
end

-- reset: deletes the keys (all or none); counts the live ones.
function OPS.reset(now)
  local found = 0
  local exists = {}
  local n = int(ARGV[3], 'numkeys')
  for k = 1, n do
    local stored = load(KEYS[k], guard(k, n))
    exists[k] = stored ~= nil
    if live(stored, now) then found = found + 1 end
  end
  for k = 1, n do
    if exists[k] then redis.call('DEL', KEYS[k]) end
  end
  return found
end

-- status: the policy and a peek of cost 1, as field/value pairs; nil when absent.
function OPS.status(now)
  local current = live(load(KEYS[1], guard(1, 1)), now)
  if not current then return false end
  local alg = ALGORITHMS[current.name]
  local out = { 'algorithm', current.name }
  local has_limit = false
  for j, field in ipairs(alg.fields) do
    out[#out + 1] = field
    out[#out + 1] = current.policy[j]
    if field == 'limit' then has_limit = true end
  end
  local peek = { cost = 1, peek = true, max_wait = 0, read_only = true }
  local d = alg.decide(current.policy, current.policy, current.state, now, peek)
  local fields = { { 'allowed', d.allowed and 1 or 0 }, { 'limit', d.limit },
    { 'remaining', d.remaining }, { 'retry_after_ms', d.retry }, { 'reset_after_ms', d.reset } }
  for _, f in ipairs(fields) do
    if not (f[1] == 'limit' and has_limit) then
      out[#out + 1] = f[1]
      out[#out + 1] = f[2]
    end
  end
  return out
end

-- usage_add: amount, bucket_ms, buckets. Replies the total over the ring afterwards; an
-- amount of 0 only reads it.
function OPS.usage_add(now)
  local amount = cost_of(ARGV[3], 'amount')
  local p = USAGE.check({ positive(ARGV[4], 'bucket_ms'), positive(ARGV[5], 'buckets') })
  local key = KEYS[1]
  local current = live(load(key, guard(1, 1)), now)
  local s = nil
  if current then
    if current.name ~= 'usage' then wrong_algorithm(current.name) end
    local q = current.policy
    if q[1] ~= p[1] or q[2] ~= p[2] then
      local n = function(v) return string.format('%.0f', v) end
      fail("ERR bucket_ms and buckets must be the key's: it records " .. n(q[2]) ..
        ' buckets of ' .. n(q[1]) .. ' ms, not ' .. n(p[2]) .. ' of ' .. n(p[1]) ..
        ' ms (RL.RESET the key to change its shape)')
    end
    s = current.state
  end
  if amount == 0 then
    if s then return USAGE.total(p, s, now) end
    return 0
  end
  local state = USAGE.add(p, s, now, amount)
  store(key, encode('usage', p, state), USAGE.idle(p, state))
  return USAGE.total(p, state, now)
end

-- usage: every bucket of the ring, oldest first, as bucket_start_ms, amount pairs; an
-- empty array when the key is absent or idle.
function OPS.usage(now)
  local current = live(load(KEYS[1], guard(1, 1)), now)
  if not current then return {} end
  if current.name ~= 'usage' then wrong_algorithm(current.name) end
  return USAGE.read(current.policy, current.state, now)
end

local op = OPS[ARGV[1]]
if not op then fail('ERR unknown redlimit script operation') end
return op(clock(ARGV[2]))
