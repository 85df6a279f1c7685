-- Apply a move (reschedule) in Redis after the durable store recorded it: the new slot passes
-- from the move's holder to the appointment and the old slot is let go, in one atomic step.
-- The new slot was taken earlier by reserve.lua under the move holder id "<appointment>~m"
-- (before the store write), so at no moment does the patient hold neither slot, and no other
-- caller ever sees the new slot open in between.
-- Idempotent: a retry after the new slot already passed to the appointment answers "already"
-- (and still lets the old slot go if it is held). An empty old slot id leaves the old slot to
-- the caller (freed through its own release path).
-- KEYS[1] new slot hash  KEYS[2] old slot hash  KEYS[3] open zset  KEYS[4] deadlines zset
-- KEYS[5] pending hash  KEYS[6] hydrated marker
-- ARGV[1] appointment id  ARGV[2] move holder id  ARGV[3] new slot id  ARGV[4] old slot id
-- ARGV[5] now (ms)  ARGV[6] "requested" (a request moved at once: keeps a decision deadline)
--   | "booked" (a confirmed appointment's move, accepted)
-- ARGV[7] the request's new decision deadline (ms; "requested" only)  ARGV[8] channel
-- ARGV[9] slot.updated frame of the old slot (status "open")
-- returns {1, "moved" | "already", "reopened" | "freed" | "kept"}
--       | {0, "not_hydrated" | "mismatch"}
--   mismatch: Redis holds the new slot for neither the holder nor the appointment (flushed or
--   stale); the caller rebuilds the doctor from the store, which has the move.
if redis.call("EXISTS", KEYS[6]) == 0 then
  return {0, "not_hydrated"}
end
local appt = ARGV[1]
local holder = ARGV[2]
local n = redis.call("HMGET", KEYS[1], "status", "appointment_id")
local outcome = "moved"
if n[2] == appt and (n[1] == "requested" or n[1] == "booked") then
  outcome = "already"
elseif n[2] ~= holder or n[1] ~= "requested" then
  return {0, "mismatch"}
end
redis.call("ZREM", KEYS[4], holder)
redis.call("HDEL", KEYS[5], holder)
if outcome == "moved" then
  if ARGV[6] == "requested" then
    local deadline = tonumber(ARGV[7])
    redis.call("HSET", KEYS[1], "appointment_id", appt, "deadline", deadline)
    redis.call("ZADD", KEYS[4], deadline, appt)
    redis.call("HSET", KEYS[5], appt, ARGV[3])
  else
    redis.call("HSET", KEYS[1], "status", "booked", "appointment_id", appt)
    redis.call("HDEL", KEYS[1], "deadline")
  end
end
if ARGV[4] == "" then
  return {1, outcome, "kept"}
end
local o = redis.call("HMGET", KEYS[2], "status", "appointment_id", "start")
if o[2] ~= appt or (o[1] ~= "requested" and o[1] ~= "booked") then
  return {1, outcome, "kept"}
end
if ARGV[6] == "booked" then
  -- the confirmed appointment had no deadline of its own; a request's was replaced above
  redis.call("ZREM", KEYS[4], appt)
end
redis.call("HSET", KEYS[2], "status", "open")
redis.call("HDEL", KEYS[2], "appointment_id", "patient_id", "deadline", "requested_at")
local start = tonumber(o[3])
if start > tonumber(ARGV[5]) then
  redis.call("ZADD", KEYS[3], start, ARGV[4])
  redis.call("PUBLISH", ARGV[8], ARGV[9])
  return {1, outcome, "reopened"}
end
return {1, outcome, "freed"}
