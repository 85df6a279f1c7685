-- Mark a requested slot booked after the confirmation was written to the durable store.
-- Idempotent: a slot already booked by this appointment returns "already".
-- KEYS[1] slot hash  KEYS[2] deadlines zset  KEYS[3] pending hash  KEYS[4] hydrated marker
-- ARGV[1] appointment id
-- returns {1, "accepted" | "already"} | {0, "not_hydrated" | "mismatch"}
--   mismatch: Redis does not hold this request (flushed or stale); the caller rebuilds the
--   doctor from the store, which already has the confirmation.
if redis.call("EXISTS", KEYS[4]) == 0 then
  return {0, "not_hydrated"}
end
local appt = ARGV[1]
local s = redis.call("HMGET", KEYS[1], "status", "appointment_id")
if s[2] ~= appt then
  return {0, "mismatch"}
end
redis.call("ZREM", KEYS[2], appt)
redis.call("HDEL", KEYS[3], appt)
if s[1] == "booked" then
  return {1, "already"}
end
if s[1] ~= "requested" then
  return {0, "mismatch"}
end
redis.call("HSET", KEYS[1], "status", "booked")
redis.call("HDEL", KEYS[1], "deadline")
return {1, "accepted"}
