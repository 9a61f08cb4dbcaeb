-- A minimal GCRA limiter, as published Redis limiters do it (the redis-gcra design, written
-- here from its description): one key per client holding its theoretical arrival time (TAT)
-- in seconds as a float. ARGV[1] is the emission interval and ARGV[2] the burst tolerance,
-- both in seconds. Returns 1 when admitted. The Redis bench's contestant
-- (benches/throughput.rs) and scripts/redis_script_costs.py's.
local now = redis.call('TIME')
now = tonumber(now[1]) + tonumber(now[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - tolerance > now then return 0 end
redis.call('SET', KEYS[1], next_tat, 'EX', math.ceil(next_tat - now))
return 1
