-- Create a batch of slots, all or nothing, refusing any overlap. Atomic: two concurrent batches
-- can never both create overlapping slots.
-- KEYS[1] doctor slots zset (id -> start)  KEYS[2] ends hash (id -> end)  KEYS[3] hydrated marker
-- KEYS[3+i] slot hash of new slot i (i = 1..n, sorted by start)
-- ARGV[1] max future slots of the doctor  ARGV[2] n  ARGV[3] now (ms)
-- ARGV[4+5(i-1) .. 8+5(i-1)] slot i: id, start (ms), end (ms), start (RFC 3339), end (RFC 3339)
-- returns {1, "created", future slots now} | {0, "not_hydrated"}
--       | {0, "slot_limit", future slots now} | {0, "slot_overlap", future slots now, other id}
-- New slots are "pending": they occupy their interval for overlap checks but are not bookable
-- nor listed until commit.lua runs (after the durable write) or abort removes them. Each holds
-- "since" (Redis TIME, ms), so a rebuild keeps it while its create is in flight (rebuild.lua).
--
-- Cost: O(n log N) for N slots of the doctor. The doctor's intervals never overlap one
-- another, except a slot and the shadow "~<id>" of its own pending edit (lock.lua). So a new
-- interval [s, e) overlaps something iff it overlaps the member starting last before e, or
-- that member's partner (the slot of a shadow, the shadow of a slot): any other member
-- starting before e either ends before that last member starts, or overlaps it.
if redis.call("EXISTS", KEYS[3]) == 0 then
  return {0, "not_hydrated"}
end
local limit = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local future = redis.call("ZCOUNT", KEYS[1], "(" .. now, "+inf")
if future + n > limit then
  return {0, "slot_limit", future}
end

local function overlapping(member, s, e)
  local stop = tonumber(redis.call("HGET", KEYS[2], member))
  local start = tonumber(redis.call("ZSCORE", KEYS[1], member))
  return stop ~= nil and start ~= nil and start < e and stop > s
end

local prev_end = nil
for i = 1, n do
  local base = 4 + 5 * (i - 1)
  local s = tonumber(ARGV[base + 1])
  local e = tonumber(ARGV[base + 2])
  if prev_end ~= nil and s < prev_end then
    return {0, "slot_overlap", future, ARGV[base - 5]}
  end
  prev_end = e
  local last = redis.call("ZREVRANGEBYSCORE", KEYS[1], "(" .. e, "-inf", "LIMIT", 0, 1)
  if #last > 0 then
    local member = last[1]
    if overlapping(member, s, e) then
      return {0, "slot_overlap", future, member}
    end
    local partner
    if string.sub(member, 1, 1) == "~" then
      partner = string.sub(member, 2)
    else
      partner = "~" .. member
    end
    if overlapping(partner, s, e) then
      return {0, "slot_overlap", future, partner}
    end
  end
end
local t = redis.call("TIME")
local since = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, n do
  local base = 4 + 5 * (i - 1)
  local id = ARGV[base]
  redis.call("HSET", KEYS[3 + i], "start", ARGV[base + 1], "end", ARGV[base + 2],
    "start_s", ARGV[base + 3], "end_s", ARGV[base + 4], "status", "pending",
    "since", since)
  redis.call("ZADD", KEYS[1], ARGV[base + 1], id)
  redis.call("HSET", KEYS[2], id, ARGV[base + 2])
end
return {1, "created", future + n}
