-- Finish a batch created by create.lua: "commit" opens the pending slots (after the durable
-- write) and publishes slot.updated for each; "abort" removes them (the durable write failed).
-- Only slots still "pending" are touched, so a repeat is harmless.
-- KEYS[1] doctor slots zset  KEYS[2] ends hash  KEYS[3] open zset  KEYS[4] hydrated marker
-- KEYS[4+i] slot hash i
-- ARGV[1] mode ("commit" | "abort")  ARGV[2] now (ms)  ARGV[3] channel  ARGV[4] n
-- ARGV[5+2(i-1)] slot id i  ARGV[6+2(i-1)] slot.updated frame of slot i (status "open")
-- returns {1, mode, done, missing} | {0, "not_hydrated"}
if redis.call("EXISTS", KEYS[4]) == 0 then
  return {0, "not_hydrated"}
end
local mode = ARGV[1]
local now = tonumber(ARGV[2])
local n = tonumber(ARGV[4])
local done, missing = 0, 0
for i = 1, n do
  local key = KEYS[4 + i]
  local id = ARGV[5 + 2 * (i - 1)]
  local status = redis.call("HGET", key, "status")
  if status == "pending" then
    done = done + 1
    if mode == "commit" then
      redis.call("HSET", key, "status", "open")
      redis.call("HDEL", key, "since")
      local start = tonumber(redis.call("HGET", key, "start"))
      if start > now then
        redis.call("ZADD", KEYS[3], start, id)
      end
      redis.call("PUBLISH", ARGV[3], ARGV[6 + 2 * (i - 1)])
    else
      redis.call("DEL", key)
      redis.call("ZREM", KEYS[1], id)
      redis.call("HDEL", KEYS[2], id)
    end
  elseif status == false then
    missing = missing + 1
  end
end
return {1, mode, done, missing}
