-- Decisions for rules whose numbers all stay exact as doubles (see `fast.rs`), for one or more
-- checks at once: the lists, the block, the strategy and a violation's new block, atomically.
-- Appended to lists.lua.
-- The same math as the core's strategies; times are (seconds, nanoseconds) pairs so that every
-- quantity stays far below 2^53. Numbers travel as big-endian doubles.
--
-- KEYS: per check, in order: the state, then (when the check screens) the whitelist and the
--       blacklist entry (all with the identifier's hash tag).
-- ARGV: 1 the rules, eight doubles each: kind (1 token_bucket/leaky_bucket/gcra, 2 fixed_window,
--       3 sliding_counter), limit, window (ns), capacity, block seconds and nanoseconds, and how
--       long (ms) a key must live after an admission and after a block starts (bounds the
--       client computes from the rule: the longest a key can take to become idle, plus a
--       margin; so no TTL is computed here);
--       2 the checks, six doubles each: the rule's position in ARGV[1] (from 1), screen (1: look
--       up the list entries), cost, consume (1, 0 to only look, 2 to give `cost` back: a
--       refund), now seconds and nanoseconds (-1: the server's TIME).
-- State: six doubles, w1..w4 and the block end (seconds, nanoseconds; 0 for none): buckets: TAT
--       seconds, nanoseconds, remainder in 1/limit ns, the limit it was written under; fixed_window: window start seconds,
--       nanoseconds, count; sliding_counter: the same and the current count in w4.
-- Reply: integers (every number here is whole): the server's time (seconds, nanoseconds; 0, 0
--       when unused), then seven per check: code (0 denied, 1 admitted, 2 whitelisted, 3 blacklisted, 4 blocked), two for a
--       time (the new block end, the blacklist entry's expiry or the block end; -1, -1 for none),
--       and, for a decision, the state w1..w4 before the request.

local NO_STATE = struct.pack(">dddddd", 0, 0, 0, 0, 0, 0)

-- (s, n) plus `ns` nanoseconds (ns < 2^53), normalised.
local function plus(s, n, ns)
  local nanos = n + ns
  local carry = math.floor(nanos / E9)
  return s + carry, nanos - carry * E9
end

-- a · b > c · d for non-negative integers below 2^53, exactly: each product as a double plus
-- its rounding error (Dekker's two-product with Veltkamp's split).
local SPLIT = 134217729
local function two_product(a, b)
  local p = a * b
  local t = SPLIT * a
  local ah = t - (t - a)
  local al = a - ah
  t = SPLIT * b
  local bh = t - (t - b)
  local bl = b - bh
  return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl
end
local function exceeds(a, b, c, d)
  local p, pe = two_product(a, b)
  local q, qe = two_product(c, d)
  return p > q or (p == q and pe > qe)
end

-- The start of the window holding (s, n): windows are whole seconds or divide one second.
local function window_start(s, n, window)
  if window % E9 == 0 then
    return s - s % (window / E9), 0
  end
  return s, n - n % window
end

-- A bucket's debt in units of 1/limit ns: (TAT - now) · limit + remainder when the TAT is
-- ahead. Beyond the whole capacity (only after the caller's clock went back) it counts as
-- twice the capacity, and is kept out of products that would leave 2^53. A state written under
-- another limit (w4; 0 before it was kept) is read with that limit: the debt is the amount
-- consumed times the window, whatever the limit.
local function tat_debt(w1, w2, w3, w4, s, n, limit, capacity, window)
  local written = w4 > 0 and w4 or limit
  if before(w1, w2, s, n) then
    return 0
  end
  local ahead_ns = (w1 - s) * E9 + (w2 - n)
  return ahead_ns > (capacity * window) / written + 1 and 2 * capacity * window
    or ahead_ns * written + w3
end

-- The bucket state `ahead` units of 1/limit ns past (s, n): the TAT, its remainder, the limit.
local function tat_state(s, n, ahead, limit)
  local whole = math.floor(ahead / limit)
  local frac = ahead - whole * limit
  if frac < 0 then
    whole, frac = whole - 1, frac + limit
  elseif frac >= limit then
    whole, frac = whole + 1, frac - limit
  end
  local ts, tn = plus(s, n, whole)
  return ts, tn, frac, limit
end

local rules = {}
do
  local blob, at = ARGV[1], 1
  while at <= #blob do
    local rule = { struct.unpack(">dddddddd", blob, at) }
    at = rule[9]
    rules[#rules + 1] = rule
  end
end

local written = {}
local time_s, time_n
local values = redis.call("MGET", unpack(KEYS))
local reply, size = { 0, 0 }, 2
local checks, at, k = ARGV[2], 1, 1
while at <= #checks do
  local rule_at, screen_lists, cost, consume, s, n, next_at = struct.unpack(">dddddd", checks, at)
  at = next_at
  local rule = rules[rule_at]
  local kind, limit, window, capacity = rule[1], rule[2], rule[3], rule[4]
  if s < 0 then
    if not time_s then
      local t = redis.call("TIME")
      time_s, time_n = tonumber(t[1]), tonumber(t[2]) * 1000
      reply[1], reply[2] = time_s, time_n
    end
    s, n = time_s, time_n
  end
  local key = KEYS[k]
  -- Anything but a state this script wrote (none yet; another type, which MGET reads as
  -- nothing; a stray value) counts as a fresh key, and the next admission overwrites it.
  local state = written[key] or values[k]
  if not state or #state ~= 48 then
    state = NO_STATE
  end
  local w1, w2, w3, w4, bs, bn = struct.unpack(">dddddd", state)
  local list, black_s, black_n
  if screen_lists == 1 then
    list, black_s, black_n = screen(values[k + 1], values[k + 2], s, n)
    k = k + 3
  else
    k = k + 1
  end
  local code, until_s, until_n = 0, -1, -1
  if list == "white" then
    code, w1, w2, w3, w4 = 2, 0, 0, 0, 0
  elseif list == "black" then
    code, until_s, until_n, w1, w2, w3, w4 = 3, black_s, black_n, 0, 0, 0, 0
  elseif before(s, n, bs, bn) then
    code, until_s, until_n, w1, w2, w3, w4 = 4, bs, bn, 0, 0, 0, 0
  else
    -- The strategy: whether the request fits, and the state after it.
    local allowed, n1, n2, n3, n4
    if kind == 1 then
      local ahead = tat_debt(w1, w2, w3, w4, s, n, limit, capacity, window) + cost * window
      allowed = ahead <= capacity * window
      n1, n2, n3, n4 = tat_state(s, n, ahead, limit)
    else
      local cs, cn = window_start(s, n, window)
      local ss, sn, prev, cur = w1, w2, w3, w4
      if kind == 2 then
        if before(ss, sn, cs, cn) then
          ss, sn, prev = cs, cn, 0
        end
        allowed = prev + cost <= limit
        n1, n2, n3, n4 = ss, sn, prev + cost, 0
      else
        if before(ss, sn, cs, cn) then
          local es, en = plus(ss, sn, window)
          if es == cs and en == cn then
            prev, cur = cur, 0
          else
            prev, cur = 0, 0
          end
          ss, sn = cs, cn
        end
        local elapsed = math.max(0, math.min((s - ss) * E9 + (n - sn), window))
        local room = limit - cur - cost
        allowed = room >= 0 and not exceeds(prev, window - elapsed, room, window)
        n1, n2, n3, n4 = ss, sn, prev, cur + cost
      end
    end
    if consume == 2 then
      -- A refund: the state as if `cost` fewer had been admitted, never beyond a fresh key
      -- (the core's `strategy::refund`); the client peeks at it.
      local r1, r2, r3, r4 = w1, w2, w3, w4
      if kind == 1 then
        local debt = tat_debt(w1, w2, w3, w4, s, n, limit, capacity, window)
        r1, r2, r3, r4 = tat_state(s, n, math.max(0, debt - cost * window), limit)
      else
        local cs, cn = window_start(s, n, window)
        if kind == 2 then
          if not before(w1, w2, cs, cn) then
            r3 = math.max(0, w3 - cost)
          end
        else
          local prev, cur = w3, w4
          if before(w1, w2, cs, cn) then
            local es, en = plus(w1, w2, window)
            if es == cs and en == cn then
              prev, cur = cur, 0
            else
              prev, cur = 0, 0
            end
            r1, r2 = cs, cn
          end
          local from_cur = math.min(cur, cost)
          r3, r4 = prev - math.min(prev, cost - from_cur), cur - from_cur
        end
      end
      local value = struct.pack(">dddddd", r1, r2, r3, r4, bs, bn)
      written[key] = value
      redis.call("SET", key, value, "PX", rule[7])
      allowed = true
    elseif consume == 1 and allowed then
      local value = struct.pack(">dddddd", n1, n2, n3, n4, 0, 0)
      written[key] = value
      redis.call("SET", key, value, "PX", rule[7])
    elseif consume == 1 and (rule[5] > 0 or rule[6] > 0) then
      until_s, until_n = plus(s + rule[5], n, rule[6])
      local value = struct.pack(">dddddd", w1, w2, w3, w4, until_s, until_n)
      written[key] = value
      redis.call("SET", key, value, "PX", rule[8])
    end
    code = allowed and 1 or 0
  end
  reply[size + 1], reply[size + 2], reply[size + 3] = code, until_s, until_n
  reply[size + 4], reply[size + 5], reply[size + 6], reply[size + 7] = w1, w2, w3, w4
  size = size + 7
end
return reply
