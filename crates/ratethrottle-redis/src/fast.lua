-- Decisions for rules whose numbers all stay exact as doubles (see `fast.rs`), for one or more
-- checks at once: the lists, the block, the strategy and a violation's new block, atomically.
-- The same math as the core's strategies; times are (seconds, nanoseconds) pairs so that every
-- quantity stays far below 2^53.
--
-- KEYS: per check i = 0, 1, ...: 3i+1 the state, 3i+2 the whitelist entry, 3i+3 the blacklist
--       entry (all with the identifier's hash tag).
-- ARGV: per check, ten big-endian doubles: kind (1 token_bucket/leaky_bucket/gcra, 2 fixed_window,
--       3 sliding_counter), cost, consume (1 or 0), now seconds and nanoseconds (-1: the server's
--       TIME), block seconds and nanoseconds, limit, window (ns), capacity.
-- State: six big-endian doubles, w1..w4 and the block end (seconds, nanoseconds; 0 for none):
--       buckets: TAT seconds, nanoseconds, remainder in 1/limit ns; fixed_window: window start
--       seconds, nanoseconds, count; sliding_counter: the same and the current count in w4.
-- Reply: one string of big-endian doubles: the server's time (seconds, nanoseconds; 0, 0 when
--       unused), then seven per check: code (0 denied, 1 admitted, 2 whitelisted, 3 blacklisted, 4 blocked), two for a
--       time (the new block end, the blacklist entry's expiry or the block end; -1, -1 for none),
--       and, for a decision, the state w1..w4 before the request.

local E9 = 1000000000
-- Keys live this long past the moment they would be idle, in Redis's own time: the decision's
-- clock (the caller's, with `TimeSource::Caller`) may run apart from it.
local MIN_TTL_MS = 1000
local NO_STATE = struct.pack(">dddddd", 0, 0, 0, 0, 0, 0)

-- Whether (as, an) is before (bs, bn).
local function before(as, an, bs, bn)
  return as < bs or (as == bs and an < bn)
end

-- (s, n) plus `ns` nanoseconds (ns < 2^53), normalised.
local function plus(s, n, ns)
  local nanos = n + ns
  local carry = math.floor(nanos / E9)
  return s + carry, nanos - carry * E9
end

-- Milliseconds from (s, n) until (us, un), plus the margin.
local function ttl_ms(s, n, us, un)
  return math.max(0, math.floor(((us - s) * E9 + (un - n)) / 1000000)) + 1 + MIN_TTL_MS
end

-- Whether a list entry (absent: false; "" without expiry; else "seconds:nanoseconds") holds at
-- (s, n); and its expiry.
local function listed(entry, s, n)
  if not entry then
    return false
  end
  if entry == "" then
    return true, -1, -1
  end
  local es, en = string.match(entry, "^(%d+):(%d+)$")
  es, en = tonumber(es), tonumber(en)
  return es ~= nil and before(s, n, es, en), es, en
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

local written = {}
local time_s, time_n
local values = redis.call("MGET", unpack(KEYS))
local reply = {}

-- Check i's seven answers.
local function answer(i, code, t1, t2, a, b, c, d)
  reply[i + 2] = struct.pack(">ddddddd", code, t1, t2, a, b, c, d)
end

for i = 0, #ARGV - 1 do
  local kind, cost, consume, s, n, block_s, block_n, limit, window, capacity =
    struct.unpack(">dddddddddd", ARGV[i + 1])
  if s < 0 then
    if not time_s then
      local t = redis.call("TIME")
      time_s, time_n = tonumber(t[1]), tonumber(t[2]) * 1000
    end
    s, n = time_s, time_n
  end
  local key = KEYS[3 * i + 1]
  local white = listed(values[3 * i + 2], s, n)
  local black, black_s, black_n = listed(values[3 * i + 3], s, n)
  local w1, w2, w3, w4, bs, bn = struct.unpack(">dddddd", written[key] or values[3 * i + 1] or NO_STATE)
  if white then
    answer(i, 2, -1, -1, 0, 0, 0, 0)
  elseif black then
    answer(i, 3, black_s, black_n, 0, 0, 0, 0)
  elseif before(s, n, bs, bn) then
    answer(i, 4, bs, bn, 0, 0, 0, 0)
  else
    -- The strategy: whether the request fits, the state after it, and when the key is idle
    -- before (idle_s, idle_n) and after it (next_idle_s, next_idle_n).
    local allowed, n1, n2, n3, n4
    local idle_s, idle_n, next_idle_s, next_idle_n
    if kind == 1 then
      -- The debt in units of 1/limit ns: (TAT - now) · limit + remainder when the TAT is
      -- ahead. Beyond the whole capacity (only after the caller's clock went back) it is
      -- denied, and kept out of products that would leave 2^53.
      local debt = 0
      if not before(w1, w2, s, n) then
        local ahead_ns = (w1 - s) * E9 + (w2 - n)
        debt = ahead_ns > (capacity * window) / limit + 1 and 2 * capacity * window
          or ahead_ns * limit + w3
      end
      local ahead = debt + cost * window
      allowed = ahead <= capacity * window
      local whole = math.floor(ahead / limit)
      local frac = ahead - whole * limit
      if frac < 0 then
        whole, frac = whole - 1, frac + limit
      elseif frac >= limit then
        whole, frac = whole + 1, frac - limit
      end
      n1, n2 = plus(s, n, whole)
      n3, n4 = frac, 0
      idle_s, idle_n = w1, w2 + 1
      next_idle_s, next_idle_n = n1, n2 + 1
    else
      local cs, cn = window_start(s, n, window)
      local ss, sn, prev, cur = w1, w2, w3, w4
      if kind == 2 then
        if before(ss, sn, cs, cn) then
          ss, sn, prev = cs, cn, 0
        end
        allowed = prev + cost <= limit
        n1, n2, n3, n4 = ss, sn, prev + cost, 0
        idle_s, idle_n = plus(w1, w2, window)
        next_idle_s, next_idle_n = plus(ss, sn, window)
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
        idle_s, idle_n = plus(w1, w2, 2 * window)
        next_idle_s, next_idle_n = plus(ss, sn, 2 * window)
      end
    end
    local until_s, until_n = -1, -1
    if consume == 1 and allowed then
      local value = struct.pack(">dddddd", n1, n2, n3, n4, 0, 0)
      written[key] = value
      redis.call("SET", key, value, "PX", ttl_ms(s, n, next_idle_s, next_idle_n))
    elseif consume == 1 and (block_s > 0 or block_n > 0) then
      until_s, until_n = plus(s + block_s, n, block_n)
      local value = struct.pack(">dddddd", w1, w2, w3, w4, until_s, until_n)
      written[key] = value
      if before(idle_s, idle_n, until_s, until_n) then
        idle_s, idle_n = until_s, until_n
      end
      redis.call("SET", key, value, "PX", ttl_ms(s, n, idle_s, idle_n))
    end
    answer(i, allowed and 1 or 0, until_s, until_n, w1, w2, w3, w4)
  end
end
reply[1] = struct.pack(">dd", time_s or 0, time_n or 0)
return table.concat(reply)
