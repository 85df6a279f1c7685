-- Finish a lock taken by lock.lua: "delete" removes the slot, "edit" applies the new interval
-- (both after the durable write, publishing slot.updated), "abort" restores the open slot
-- unchanged (the durable write failed; nothing is published).
-- KEYS[1] slot hash  KEYS[2] doctor slots zset  KEYS[3] ends hash  KEYS[4] open zset
-- KEYS[5] hydrated marker
-- ARGV[1] slot id  ARGV[2] mode ("delete" | "edit" | "abort")  ARGV[3] now (ms)  ARGV[4] channel
-- ARGV[5] frame to publish  ARGV[6] new start (RFC 3339)  ARGV[7] new end (RFC 3339)
-- returns {1, mode} | {0, "not_hydrated" | "not_locked"}
if redis.call("EXISTS", KEYS[5]) == 0 then
  return {0, "not_hydrated"}
end
if redis.call("HGET", KEYS[1], "status") ~= "locked" then
  return {0, "not_locked"}
end
local id = ARGV[1]
local shadow = "~" .. id
local mode = ARGV[2]
local now = tonumber(ARGV[3])
redis.call("ZREM", KEYS[2], shadow)
redis.call("HDEL", KEYS[3], shadow)
if mode == "delete" then
  redis.call("DEL", KEYS[1])
  redis.call("ZREM", KEYS[2], id)
  redis.call("HDEL", KEYS[3], id)
  redis.call("ZREM", KEYS[4], id)
  redis.call("PUBLISH", ARGV[4], ARGV[5])
  return {1, mode}
end
if mode == "edit" then
  local n = redis.call("HMGET", KEYS[1], "nstart", "nend")
  redis.call("HSET", KEYS[1], "start", n[1], "end", n[2], "start_s", ARGV[6], "end_s", ARGV[7])
  redis.call("ZADD", KEYS[2], n[1], id)
  redis.call("HSET", KEYS[3], id, n[2])
  redis.call("PUBLISH", ARGV[4], ARGV[5])
end
redis.call("HDEL", KEYS[1], "nstart", "nend", "since")
redis.call("HSET", KEYS[1], "status", "open")
local start = tonumber(redis.call("HGET", KEYS[1], "start"))
if start > now then
  redis.call("ZADD", KEYS[4], start, id)
end
return {1, mode}
