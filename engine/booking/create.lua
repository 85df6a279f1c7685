-- Create a batch of slots, all or nothing, refusing any overlap. Atomic: two concurrent batches
-- can never both create overlapping slots.
-- KEYS[1] doctor slots zset (id -> start)  KEYS[2] ends hash (id -> end)  KEYS[3] hydrated marker
-- KEYS[3+i] slot hash of new slot i (i = 1..n, sorted by start)
-- ARGV[1] max slot length (ms)  ARGV[2] n
-- ARGV[3+5(i-1) .. 7+5(i-1)] slot i: id, start (ms), end (ms), start (RFC 3339), end (RFC 3339)
-- returns {1, "created", n} | {0, "not_hydrated"} | {0, "slot_overlap", i, other id}
-- New slots are "pending": they occupy their interval for overlap checks but are not bookable
-- nor listed until commit.lua runs (after the durable write) or abort removes them. Each holds
-- "since" (Redis TIME, ms), so a rebuild keeps it while its create is in flight (rebuild.lua).
if redis.call("EXISTS", KEYS[3]) == 0 then
  return {0, "not_hydrated"}
end
local maxlen = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local prev_end = nil
for i = 1, n do
  local base = 3 + 5 * (i - 1)
  local s = tonumber(ARGV[base + 1])
  local e = tonumber(ARGV[base + 2])
  if prev_end ~= nil and s < prev_end then
    return {0, "slot_overlap", i, ARGV[base - 5]}
  end
  prev_end = e
  local ids = redis.call("ZRANGEBYSCORE", KEYS[1], s - maxlen, "(" .. e)
  if #ids > 0 then
    local ends = redis.call("HMGET", KEYS[2], unpack(ids))
    for j = 1, #ids do
      if tonumber(ends[j]) ~= nil and tonumber(ends[j]) > s then
        return {0, "slot_overlap", i, ids[j]}
      end
    end
  end
end
local t = redis.call("TIME")
local since = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, n do
  local base = 3 + 5 * (i - 1)
  local id = ARGV[base]
  redis.call("HSET", KEYS[3 + i], "start", ARGV[base + 1], "end", ARGV[base + 2],
    "start_s", ARGV[base + 3], "end_s", ARGV[base + 4], "status", "pending",
    "since", since)
  redis.call("ZADD", KEYS[1], ARGV[base + 1], id)
  redis.call("HSET", KEYS[2], id, ARGV[base + 2])
end
return {1, "created", n}
