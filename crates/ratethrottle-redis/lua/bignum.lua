-- Exact unsigned integers for Redis Lua (whose numbers are doubles, exact only below 2^53).
-- A number is an array of base-2^24 limbs, least significant first, with no high zero limbs
-- (zero is the empty array). Products of two limbs stay below 2^48, so sums of a few of them
-- stay exact. Interfaces use hexadecimal strings.

local BASE = 16777216

local function trim(n)
  while #n > 0 and n[#n] == 0 do
    n[#n] = nil
  end
  return n
end

-- Numbers travel as hexadecimal: six digits are one limb.
local function from_hex(s)
  local n, i = {}, #s
  while i > 0 do
    local j = math.max(1, i - 5)
    n[#n + 1] = tonumber(string.sub(s, j, i), 16)
    i = j - 1
  end
  return trim(n)
end

local function to_hex(n)
  if #n == 0 then
    return "0"
  end
  local parts = { string.format("%x", n[#n]) }
  for i = #n - 1, 1, -1 do
    parts[#parts + 1] = string.format("%06x", n[i])
  end
  return table.concat(parts)
end

local function from_small(x)
  local n = {}
  while x > 0 do
    local q = math.floor(x / BASE)
    n[#n + 1] = x - q * BASE
    x = q
  end
  return n
end

local function cmp(a, b)
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then
      return a[i] < b[i] and -1 or 1
    end
  end
  return 0
end

local function add(a, b)
  local r, carry = {}, 0
  for i = 1, math.max(#a, #b) do
    local v = (a[i] or 0) + (b[i] or 0) + carry
    if v >= BASE then
      r[i], carry = v - BASE, 1
    else
      r[i], carry = v, 0
    end
  end
  if carry > 0 then
    r[#r + 1] = carry
  end
  return r
end

-- a - b, or zero when b > a.
local function sub(a, b)
  if cmp(a, b) <= 0 then
    return {}
  end
  local r, borrow = {}, 0
  for i = 1, #a do
    local v = a[i] - (b[i] or 0) - borrow
    if v < 0 then
      r[i], borrow = v + BASE, 1
    else
      r[i], borrow = v, 0
    end
  end
  return trim(r)
end

local function mul(a, b)
  if #a == 0 or #b == 0 then
    return {}
  end
  local r = {}
  for i = 1, #a + #b do
    r[i] = 0
  end
  for i = 1, #a do
    local carry = 0
    for j = 1, #b do
      local v = r[i + j - 1] + a[i] * b[j] + carry
      carry = math.floor(v / BASE)
      r[i + j - 1] = v - carry * BASE
    end
    local k = i + #b
    while carry > 0 do
      local v = r[k] + carry
      carry = math.floor(v / BASE)
      r[k] = v - carry * BASE
      k = k + 1
    end
  end
  return trim(r)
end

local function to_double(n)
  local x = 0
  for i = #n, 1, -1 do
    x = x * BASE + n[i]
  end
  return x
end

-- floor(a / b) for b > 0: a double estimate, corrected exactly. The estimate is off by at most
-- a / b / 2^52, so the correction takes a step or two for the quotients used here (times over
-- windows of a microsecond or more).
local function div_floor(a, b)
  local one = from_small(1)
  local q = from_small(math.floor(to_double(a) / to_double(b)))
  while #q > 0 and cmp(mul(q, b), a) > 0 do
    q = sub(q, one)
  end
  while cmp(mul(add(q, one), b), a) <= 0 do
    q = add(q, one)
  end
  return q
end

local function min(a, b)
  return cmp(a, b) <= 0 and a or b
end

local function max(a, b)
  return cmp(a, b) >= 0 and a or b
end
