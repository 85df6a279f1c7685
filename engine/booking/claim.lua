-- The patient half of a reservation: claim the slot's interval in the patient's holdings, within
-- the patient's request caps.
-- Design (Redis Cluster): a patient's holdings span doctors, so they cannot share a doctor's
-- hash tag. They live in one hash under the patient's own tag {p:<id>}, and a reservation is two
-- atomic scripts: reserve.lua on the doctor's tag, then this script. If this one refuses (an
-- overlap, a cap), the caller releases the slot with reopen.lua, so a patient never keeps two
-- overlapping appointments nor more requests than the caps. Two concurrent reservations of one
-- patient (any doctors) both pass reserve.lua, then serialise here: the caps and the overlap
-- are decided in one atomic step over all the patient's holdings, whatever the doctors.
-- Idempotent by appointment id. Entries whose end has passed are pruned on the way.
-- KEYS[1] patient holds hash (appointment id -> "start:end" for a confirmed appointment,
--         "start:end:doctor id:deadline" for a request; field "~h" = loaded from store)
-- ARGV[1] appointment id  ARGV[2] start (ms)  ARGV[3] end (ms)  ARGV[4] now (ms)
-- ARGV[5] doctor id  ARGV[6] decision deadline (ms)  ARGV[7] max requests at one doctor
-- ARGV[8] max requests in all
-- A request counts toward the caps until its deadline: every request is decided or expires
-- by then, so an entry a crash left behind stops counting by itself.
-- returns {1, "claimed" | "already"} | {0, "not_hydrated"} | {0, "patient_overlap", other id}
--       | {0, "request_limit", "doctor" | "total"}
if redis.call("HEXISTS", KEYS[1], "~h") == 0 then
  return {0, "not_hydrated"}
end
local appt = ARGV[1]
if redis.call("HEXISTS", KEYS[1], appt) == 1 then
  return {1, "already"}
end
local s = tonumber(ARGV[2])
local e = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local doctor = ARGV[5]
local at_doctor = 0
local in_all = 0
local all = redis.call("HGETALL", KEYS[1])
for i = 1, #all, 2 do
  local field = all[i]
  if field ~= "~h" then
    local parts = {}
    for part in string.gmatch(all[i + 1], "[^:]+") do
      parts[#parts + 1] = part
    end
    local hs = tonumber(parts[1])
    local he = tonumber(parts[2])
    if he <= now then
      redis.call("HDEL", KEYS[1], field)
    elseif hs < e and he > s then
      return {0, "patient_overlap", field}
    elseif #parts >= 4 and tonumber(parts[4]) > now then
      in_all = in_all + 1
      if parts[3] == doctor then
        at_doctor = at_doctor + 1
      end
    end
  end
end
if at_doctor >= tonumber(ARGV[7]) then
  return {0, "request_limit", "doctor"}
end
if in_all >= tonumber(ARGV[8]) then
  return {0, "request_limit", "total"}
end
redis.call("HSET", KEYS[1], appt, ARGV[2] .. ":" .. ARGV[3] .. ":" .. doctor .. ":" .. ARGV[6])
return {1, "claimed"}
