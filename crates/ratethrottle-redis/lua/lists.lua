-- The prelude of every script: time as (seconds, nanoseconds) pairs, and the list screening.
-- A whitelist or blacklist entry holds its expiry as "seconds:nanoseconds", or "" for none;
-- an entry whose expiry has passed does not count (Redis drops it at its expiry; with the
-- caller's clock, the store drops it when it next lists the entries).

local E9 = 1000000000

-- Whether (as, an) is before (bs, bn).
local function before(as, an, bs, bn)
  return as < bs or (as == bs and an < bn)
end

-- Whether a list entry (absent: false or nil) holds at (s, n); and its expiry (-1, -1 for
-- none).
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

-- What the lists say at (s, n), from the two entries: "white", or "black" and the expiry
-- (-1, -1 for none), or nil when the identifier is on neither.
local function screen(white, black, s, n)
  if listed(white, s, n) then
    return "white", -1, -1
  end
  local blacklisted, es, en = listed(black, s, n)
  if blacklisted then
    return "black", es, en
  end
  return nil
end

