-- Lock an open slot before its durable edit or delete, so no reservation can take it meanwhile.
-- For an edit the new interval is checked against every other slot and held as a shadow member
-- "~<id>" (slots zset and ends hash) until unlock.lua commits or aborts.
-- KEYS[1] slot hash  KEYS[2] doctor slots zset  KEYS[3] ends hash  KEYS[4] open zset
-- KEYS[5] hydrated marker
-- ARGV[1] slot id  ARGV[2] mode ("edit" | "delete")  ARGV[3] new start (ms)  ARGV[4] new end (ms)
-- ARGV[5] max slot length (ms)
-- The locked slot holds "since" (Redis TIME, ms): a rebuild keeps it while the edit is in
-- flight (rebuild.lua).
-- returns {1, "locked", start, end} (the current interval)
--       | {0, "not_hydrated" | "not_found" | "slot_not_open" | "slot_overlap"}
if redis.call("EXISTS", KEYS[5]) == 0 then
  return {0, "not_hydrated"}
end
local status = redis.call("HGET", KEYS[1], "status")
if status == false or status == "pending" then
  return {0, "not_found"}
end
if status ~= "open" then
  return {0, "slot_not_open"}
end
local id = ARGV[1]
if ARGV[2] == "edit" then
  local s = tonumber(ARGV[3])
  local e = tonumber(ARGV[4])
  local shadow = "~" .. id
  local ids = redis.call("ZRANGEBYSCORE", KEYS[2], s - tonumber(ARGV[5]), "(" .. e)
  local others = {}
  for j = 1, #ids do
    if ids[j] ~= id and ids[j] ~= shadow then
      others[#others + 1] = ids[j]
    end
  end
  if #others > 0 then
    local ends = redis.call("HMGET", KEYS[3], unpack(others))
    for j = 1, #others do
      if tonumber(ends[j]) ~= nil and tonumber(ends[j]) > s then
        return {0, "slot_overlap"}
      end
    end
  end
  redis.call("ZADD", KEYS[2], s, shadow)
  redis.call("HSET", KEYS[3], shadow, e)
  redis.call("HSET", KEYS[1], "nstart", s, "nend", e)
end
local t = redis.call("TIME")
local since = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], "status", "locked", "since", since)
redis.call("ZREM", KEYS[4], id)
local cur = redis.call("HMGET", KEYS[1], "start", "end")
return {1, "locked", tonumber(cur[1]), tonumber(cur[2])}
