-- One atomic decision for one (rule, identifier) key: the lists, the block, the strategy, and on
-- a violation the new block. Appended to lists.lua and bignum.lua. All times are nanoseconds
-- since the Unix epoch, as hexadecimal strings, exact (see bignum.lua); the sliding_window
-- counts are decimal.
--
-- The common cases go to fast.lua instead; this script takes what it does not (numbers beyond
-- exact doubles, windows neither whole seconds nor divisors of one, and sliding_window).
--
-- KEYS: 1 state hash, 2 whitelist entry, 3 blacklist entry (all with the identifier's hash tag).
-- ARGV: 1 strategy ("tat" | "fixed" | "counter" | "log"), 2 now ("" = the server's TIME),
--       3 cost, 4 consume ("1"; "0" to only look; "2" to give `cost` back, a refund, after
--       which the reply is a look at one unit), 5 block, 6 limit, 7 window, 8 capacity.
-- Reply: { outcome, now, ... } where outcome is
--   "white";  "black", expiry or "";  "blocked", until;
--   "decided", allowed ("1" | "0"), new block end or "", then the key's state before the
--   request: for "tat" the TAT in units of 1/limit ns (converted from the limit it was
--   written under), for "fixed" start and count, for "counter" start, previous and current
--   counts; for "log" the log as far as the decision reads it: the sum of its costs, the
--   time of its newest entry (or ""), and, for a denial the wait of which matters, its entries
--   from the oldest (time, cost) until enough of them have left the window.

local kind, cost_s, consume, refund = ARGV[1], ARGV[3], ARGV[4] == "1", ARGV[4] == "2"

-- Keys live at least this long past the moment they would be idle, in Redis's own time: the
-- decision's clock (the caller's, with `TimeSource::Caller`) may run apart from it.
local MIN_TTL_MS = 1000

-- Now, exact, and as (seconds, nanoseconds) for the lists.
local now, now_sec, now_nsec
if ARGV[2] == "" then
  -- Microseconds since the epoch stay below 2^53 (until the year 2255): exact as a double.
  local t = redis.call("TIME")
  now_sec, now_nsec = tonumber(t[1]), tonumber(t[2]) * 1000
  now = mul(from_small(now_sec * 1000000 + tonumber(t[2])), from_small(1000))
else
  now = from_hex(ARGV[2])
  local seconds = div_floor(now, from_small(E9))
  now_sec, now_nsec = to_double(seconds), to_double(sub(now, mul(seconds, from_small(E9))))
end
local now_s = to_hex(now)

local list, black_s, black_n =
  screen(redis.call("GET", KEYS[2]), redis.call("GET", KEYS[3]), now_sec, now_nsec)
if list == "white" then
  return { "white", now_s }
elseif list == "black" then
  return { "black", now_s, black_s < 0 and "" or string.format("%d:%d", black_s, black_n) }
end

local block, limit, window, capacity =
  from_hex(ARGV[5]), from_hex(ARGV[6]), from_hex(ARGV[7]), from_hex(ARGV[8])
local cost = from_hex(cost_s)
local fields = redis.call("HMGET", KEYS[1], "b", "s0", "s1", "s2")
local blocked_until = from_hex(fields[1] or "0")
if cmp(blocked_until, now) > 0 then
  return { "blocked", now_s, to_hex(blocked_until) }
end
local s0, s1, s2 = from_hex(fields[2] or "0"), from_hex(fields[3] or "0"), from_hex(fields[4] or "0")
local NS_PER_MS = 1000000

-- Milliseconds from now until `at` (ns), rounded up, plus a margin: a key must never expire
-- before it is idle.
local function ms_until(at)
  return math.floor(to_double(sub(at, now)) / NS_PER_MS) + MIN_TTL_MS
end

local function window_start()
  return mul(div_floor(now, window), window)
end

-- Strategy: whether the request fits, the new state words, when the key is idle again, and
-- the reply's state part.
local allowed, next_state, idle_at, reply_state
if kind == "tat" then
  -- The TAT in units of 1/limit ns: admitted when the debt after the request is at most the
  -- capacity (burst · window). A state written under another limit (s1; none before it was
  -- kept) is converted: its debt is the amount consumed times the window, whatever the limit.
  local now_scaled = mul(now, limit)
  if #s1 > 0 and cmp(s1, limit) ~= 0 then
    local old_now = mul(now, s1)
    s0 = cmp(s0, old_now) > 0 and add(now_scaled, sub(s0, old_now)) or now_scaled
  end
  local ahead = add(sub(s0, now_scaled), mul(cost, window))
  allowed = cmp(ahead, mul(capacity, window)) <= 0
  next_state = { to_hex(add(now_scaled, ahead)), to_hex(limit) }
  -- Idle when the debt is paid, about now + debt / limit ns (only the key's expiry uses it,
  -- with a margin).
  local debt = allowed and ahead or sub(s0, now_scaled)
  idle_at = add(now, from_small(math.ceil(to_double(debt) / to_double(limit)) + 1))
  reply_state = { to_hex(s0) }
  if refund then
    local debt = cmp(s0, now_scaled) > 0 and sub(s0, now_scaled) or {}
    local give = mul(cost, window)
    local left = cmp(debt, give) > 0 and sub(debt, give) or {}
    next_state = { to_hex(add(now_scaled, left)), to_hex(limit) }
    idle_at = add(now, from_small(math.ceil(to_double(left) / to_double(limit)) + 1))
  end
elseif kind == "fixed" then
  local current = window_start()
  local start, count = s0, s1
  if cmp(start, current) < 0 then
    start, count = current, {}
  end
  local used = add(count, cost)
  allowed = cmp(used, limit) <= 0
  next_state = { to_hex(start), to_hex(used) }
  idle_at = add(s0, window)
  if allowed then
    idle_at = add(start, window)
  end
  reply_state = { to_hex(s0), to_hex(s1) }
  if refund then
    local left = (#count > 0 and cmp(count, cost) > 0) and sub(count, cost) or {}
    next_state = { to_hex(start), to_hex(left) }
    idle_at = add(start, window)
  end
elseif kind == "counter" then
  local current = window_start()
  local start, prev, cur = s0, s1, s2
  if cmp(start, current) < 0 then
    if cmp(add(start, window), current) == 0 then
      start, prev, cur = current, cur, {}
    else
      start, prev, cur = current, {}, {}
    end
  end
  local elapsed = min(sub(now, start), window)
  local used = add(mul(prev, sub(window, elapsed)), mul(cur, window))
  allowed = cmp(add(used, mul(cost, window)), mul(limit, window)) <= 0
  next_state = { to_hex(start), to_hex(prev), to_hex(add(cur, cost)) }
  idle_at = add(allowed and start or s0, add(window, window))
  reply_state = { to_hex(s0), to_hex(s1), to_hex(s2) }
  if refund then
    local from_cur = min(cur, cost)
    local rest = sub(cost, from_cur)
    local from_prev = min(prev, rest)
    next_state = { to_hex(start), to_hex(sub(prev, from_prev)), to_hex(sub(cur, from_cur)) }
    idle_at = add(start, add(window, window))
  end
end

if kind ~= "log" then
  local reply = { "decided", now_s, allowed and "1" or "0", "" }
  if refund then
    -- The client peeks at the refunded state it derives from the state before.
    reply[3] = "1"
    redis.call("HSET", KEYS[1], "s0", next_state[1], "s1", next_state[2] or "0",
      "s2", next_state[3] or "0")
    local ttl = redis.call("PTTL", KEYS[1])
    redis.call("PEXPIRE", KEYS[1], math.max(ms_until(idle_at), ttl))
  elseif consume and allowed then
    redis.call("HSET", KEYS[1], "b", "0", "s0", next_state[1], "s1", next_state[2] or "0",
      "s2", next_state[3] or "0")
    redis.call("PEXPIRE", KEYS[1], ms_until(idle_at))
  elseif consume and #block > 0 then
    local until_ = add(now, block)
    redis.call("HSET", KEYS[1], "b", to_hex(until_))
    local keep = max(until_, idle_at)
    local ttl = redis.call("PTTL", KEYS[1])
    redis.call("PEXPIRE", KEYS[1], math.max(ms_until(keep), ttl))
    reply[4] = to_hex(until_)
  end
  for i = 1, #reply_state do
    reply[#reply + 1] = reply_state[i]
  end
  return reply
end

-- sliding_window: an exact log in a list of "time cost" entries, oldest first, with the sum of
-- the costs in the state hash (s0). Limits are at most 100,000, so counts are exact doubles.
local log = KEYS[1] .. ":log"
local used = tonumber(fields[2] or "0")
local cost_n, limit_n = tonumber(cost_s, 16), tonumber(ARGV[6], 16)
local function entry(i)
  local e = redis.call("LINDEX", log, i)
  if not e then
    return nil
  end
  local space = string.find(e, " ")
  return from_hex(string.sub(e, 1, space - 1)), tonumber(string.sub(e, space + 1))
end
local pruned = false
while true do
  local at, c = entry(0)
  if not at or cmp(add(at, window), now) > 0 then
    break
  end
  redis.call("LPOP", log)
  used = used - c
  pruned = true
end
if refund then
  -- Give back the newest admissions, then answer as a look at one unit.
  local left = cost_n
  while left > 0 do
    local at, c = entry(-1)
    if not at then
      break
    end
    local taken = math.min(c, left)
    if taken == c then
      redis.call("RPOP", log)
    else
      redis.call("LSET", log, -1, to_hex(at) .. " " .. tostring(c - taken))
    end
    used, left, pruned = used - taken, left - taken, true
  end
  cost_n, consume = 1, false
end
if pruned then
  redis.call("HSET", KEYS[1], "s0", tostring(used))
end
local fits = used + cost_n <= limit_n
local newest, newest_cost = entry(-1)
local reply =
  { "decided", now_s, fits and "1" or "0", "", tostring(used), newest and to_hex(newest) or "" }
if not fits and cost_n <= limit_n then
  -- The oldest admissions leave first: the entries until enough of them have.
  local left, i = used, 0
  while true do
    local at, c = entry(i)
    if not at then
      break
    end
    reply[#reply + 1] = to_hex(at)
    reply[#reply + 1] = tostring(c)
    left = left - c
    if left + cost_n <= limit_n then
      break
    end
    i = i + 1
  end
end
if fits and consume then
  -- Admissions at the same instant share one entry.
  if newest and cmp(newest, now) == 0 then
    redis.call("LSET", log, -1, now_s .. " " .. tostring(newest_cost + cost_n))
  else
    redis.call("RPUSH", log, now_s .. " " .. tostring(cost_n))
  end
  redis.call("HSET", KEYS[1], "b", "0", "s0", tostring(used + cost_n))
  local ttl = ms_until(add(now, window))
  redis.call("PEXPIRE", KEYS[1], ttl)
  redis.call("PEXPIRE", log, ttl)
elseif not fits and consume and #block > 0 then
  local until_ = add(now, block)
  redis.call("HSET", KEYS[1], "b", to_hex(until_), "s0", tostring(used))
  local keep = max(until_, newest and add(newest, window) or now)
  redis.call("PEXPIRE", KEYS[1], ms_until(keep))
  reply[4] = to_hex(until_)
end
return reply
