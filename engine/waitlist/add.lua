-- Add a waitlist entry to the doctor's hot waitlist, refusing one that overlaps another entry of
-- the same patient at this doctor. Atomic: two concurrent overlapping entries of one patient
-- cannot both be added. Idempotent by entry id.
-- KEYS[1] waitlist hash (entry -> "from:to:patient:seat")  KEYS[2] order zset (entry -> seq)
-- KEYS[3] the patient's entries at this doctor (entry -> "from:to")  KEYS[4] waitlist marker
-- KEYS[4+i] day bucket i of the window (i = 1..n)
-- ARGV[1] entry id  ARGV[2] patient id  ARGV[3] from (ms)  ARGV[4] to (ms)  ARGV[5] seq (the
-- creation time, ms: FCFS order)  ARGV[6] seat (the patient's guard item number)  ARGV[7] n
-- ARGV[7+i] expiry of bucket i (ms, absolute)
-- FCFS is strict: the seq used is max(ARGV[5], the doctor's latest seq + 1), so two entries
-- created in the same millisecond still keep their order of arrival.
-- returns {1, "added" | "already", seq used} | {0, "not_hydrated"}
--       | {0, "already_waiting", 0, the patient's entry it overlaps}
if redis.call("EXISTS", KEYS[4]) == 0 then
  return {0, "not_hydrated"}
end
local entry = ARGV[1]
if redis.call("HEXISTS", KEYS[1], entry) == 1 then
  return {1, "already", tonumber(redis.call("ZSCORE", KEYS[2], entry))}
end
local from = tonumber(ARGV[3])
local to = tonumber(ARGV[4])
local mine = redis.call("HGETALL", KEYS[3])
for i = 1, #mine, 2 do
  local f, t = string.match(mine[i + 1], "^(%d+):(%d+)$")
  if tonumber(f) < to and tonumber(t) > from then
    return {0, "already_waiting", 0, mine[i]}
  end
end
local seq = tonumber(ARGV[5])
local last = redis.call("ZREVRANGE", KEYS[2], 0, 0, "WITHSCORES")
if #last > 0 and tonumber(last[2]) >= seq then
  seq = tonumber(last[2]) + 1
end
redis.call("HSET", KEYS[1], entry, ARGV[3] .. ":" .. ARGV[4] .. ":" .. ARGV[2] .. ":" .. ARGV[6])
redis.call("ZADD", KEYS[2], seq, entry)
redis.call("HSET", KEYS[3], entry, ARGV[3] .. ":" .. ARGV[4])
local n = tonumber(ARGV[7])
for i = 1, n do
  redis.call("ZADD", KEYS[4 + i], seq, entry)
  redis.call("PEXPIREAT", KEYS[4 + i], tonumber(ARGV[7 + i]))
end
return {1, "added", seq}
