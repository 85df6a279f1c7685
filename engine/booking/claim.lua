-- The patient half of a reservation: claim the slot's interval in the patient's holdings.
-- Design (Redis Cluster): a patient's holdings span doctors, so they cannot share a doctor's
-- hash tag. They live in one hash under the patient's own tag {p:<id>}, and a reservation is two
-- atomic scripts: reserve.lua on the doctor's tag, then this script. If this one reports an
-- overlap, the caller releases the slot with reopen.lua, so a patient never keeps two
-- overlapping appointments. Two concurrent overlapping reservations of one patient (different
-- doctors) both pass reserve.lua, then serialise here: exactly one claims, the other rolls back.
-- Idempotent by appointment id. Entries whose end has passed are pruned on the way.
-- KEYS[1] patient holds hash (appointment id -> "start:end"; field "~h" = loaded from store)
-- ARGV[1] appointment id  ARGV[2] start (ms)  ARGV[3] end (ms)  ARGV[4] now (ms)
-- returns {1, "claimed" | "already"} | {0, "not_hydrated"} | {0, "patient_overlap", other id}
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
local all = redis.call("HGETALL", KEYS[1])
for i = 1, #all, 2 do
  local field = all[i]
  if field ~= "~h" then
    local sep = string.find(all[i + 1], ":", 1, true)
    local hs = tonumber(string.sub(all[i + 1], 1, sep - 1))
    local he = tonumber(string.sub(all[i + 1], sep + 1))
    if he <= now then
      redis.call("HDEL", KEYS[1], field)
    elseif hs < e and he > s then
      return {0, "patient_overlap", field}
    end
  end
end
redis.call("HSET", KEYS[1], appt, ARGV[2] .. ":" .. ARGV[3])
return {1, "claimed"}
