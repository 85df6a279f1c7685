-- Reserve an open slot for an appointment: the doctor half of a reservation, one atomic step.
-- Checks the slot is open and far enough ahead, flips it to "requested" with the appointment
-- id, records the decision deadline, takes it out of the open set and publishes slot.updated
-- ("taken"). Exactly one of N racing callers wins; the others get slot_unavailable at once.
-- Idempotent by appointment id: a retry (after a timeout) of a reservation that landed returns
-- "already" with the same deadline instead of failing its own reservation.
-- The slot holds "since" (Redis TIME, ms): a rebuild keeps the reservation while the store may
-- still be writing it (rebuild.lua).
-- The patient half (no overlapping holdings) is claim.lua on the patient's own hash tag, run
-- right after this script; if it fails the caller runs reopen.lua (see claim.lua's header).
-- KEYS[1] slot hash  KEYS[2] open zset  KEYS[3] deadlines zset  KEYS[4] pending hash
-- KEYS[5] hydrated marker
-- ARGV[1] appointment id  ARGV[2] patient id  ARGV[3] now (ms)  ARGV[4] request TTL (ms)
-- ARGV[5] decision lead (ms): requests close this long before the start
-- ARGV[6] slot id  ARGV[7] channel  ARGV[8..10] slot.updated frame split around start and end
-- A "held" slot (a waitlist hold, release.lua) is reserved only by its holder before the hold
-- expires; it keeps "hold_entry"/"hold_expires", so a rolled-back reservation returns it to
-- that hold (release.lua, "undo"), and the reply names the entry (fulfilled by this request).
-- returns {1, "reserved" | "already", start, end, deadline, requested_at [, hold entry id]}
--       | {0, "not_hydrated" | "not_found" | "past" | "too_late" | "slot_unavailable"}
-- Deadline = min(now + TTL, start - lead). When start - lead is already past the request is
-- refused ("too_late"): the doctor would have no time left to decide.
if redis.call("EXISTS", KEYS[5]) == 0 then
  return {0, "not_hydrated"}
end
local s = redis.call("HMGET", KEYS[1], "status", "start", "end", "appointment_id", "deadline",
  "requested_at", "start_s", "end_s")
local status = s[1]
if status == false or status == "pending" then
  return {0, "not_found"}
end
local appt = ARGV[1]
if s[4] == appt and (status == "requested" or status == "booked") then
  return {1, "already", tonumber(s[2]), tonumber(s[3]), tonumber(s[5]), tonumber(s[6])}
end
local now = tonumber(ARGV[3])
local start = tonumber(s[2])
if start <= now then
  return {0, "past"}
end
local hold_entry = nil
if status == "held" then
  -- A waitlist hold (release.lua): only its patient may book it, until it expires.
  local h = redis.call("HMGET", KEYS[1], "patient_id", "hold_expires", "hold_entry")
  if h[1] ~= ARGV[2] or tonumber(h[2]) <= now then
    return {0, "slot_unavailable"}
  end
  hold_entry = h[3]
elseif status ~= "open" then
  return {0, "slot_unavailable"}
end
local lead_limit = start - tonumber(ARGV[5])
if lead_limit <= now then
  return {0, "too_late"}
end
local deadline = now + tonumber(ARGV[4])
if lead_limit < deadline then
  deadline = lead_limit
end
local t = redis.call("TIME")
local since = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call("HSET", KEYS[1], "status", "requested", "appointment_id", appt, "patient_id", ARGV[2],
  "deadline", deadline, "requested_at", now, "since", since)
redis.call("ZREM", KEYS[2], ARGV[6])
redis.call("ZADD", KEYS[3], deadline, appt)
redis.call("HSET", KEYS[4], appt, ARGV[6])
redis.call("PUBLISH", ARGV[7], ARGV[8] .. s[7] .. ARGV[9] .. s[8] .. ARGV[10])
if hold_entry then
  return {1, "reserved", start, tonumber(s[3]), deadline, now, hold_entry}
end
return {1, "reserved", start, tonumber(s[3]), deadline, now}
