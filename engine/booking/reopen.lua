-- Free a slot held by an appointment (refused, expired, cancelled, or a reservation rolled back)
-- and reopen it if it has not started; publishes slot.updated ("open") only when it reopens.
-- Only the named appointment's hold is released, so a repeat (or a late, stale caller) is
-- harmless: it returns "already".
-- KEYS[1] slot hash  KEYS[2] open zset  KEYS[3] deadlines zset  KEYS[4] pending hash
-- KEYS[5] hydrated marker
-- ARGV[1] appointment id  ARGV[2] slot id  ARGV[3] now (ms)  ARGV[4] channel
-- ARGV[5] slot.updated frame (status "open")
-- returns {1, "reopened" | "freed" | "already"} | {0, "not_hydrated"}
--   reopened: bookable again; freed: released but already started, so not bookable
if redis.call("EXISTS", KEYS[5]) == 0 then
  return {0, "not_hydrated"}
end
local appt = ARGV[1]
redis.call("ZREM", KEYS[3], appt)
redis.call("HDEL", KEYS[4], appt)
local s = redis.call("HMGET", KEYS[1], "status", "appointment_id", "start")
if s[2] ~= appt or (s[1] ~= "requested" and s[1] ~= "booked") then
  return {1, "already"}
end
redis.call("HSET", KEYS[1], "status", "open")
redis.call("HDEL", KEYS[1], "appointment_id", "patient_id", "deadline", "requested_at")
local start = tonumber(s[3])
if start > tonumber(ARGV[3]) then
  redis.call("ZADD", KEYS[2], start, ARGV[2])
  redis.call("PUBLISH", ARGV[4], ARGV[5])
  return {1, "reopened"}
end
return {1, "freed"}
