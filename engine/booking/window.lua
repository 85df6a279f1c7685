-- Read the fields of a window's slots in one call: one HMGET per slot hash in KEYS (the
-- caller read the window's ids from the doctor's slots zset), each answered as one string.
-- A pipeline of one HMGET per slot cost the client a command packed and eight values parsed
-- per slot; this costs it one command and one value per slot. Reads only.
-- KEYS[1..n] slot hashes (all of one doctor: one hash tag)
-- returns {1, "read", {per KEYS[i], its status, start, end, appointment id, hold entry,
--   patient id and hold expires joined by tabs ("" for a missing field; status "" when the
--   hash is gone)}}
-- One string per slot, not an array: none of these values can hold a tab (ids, digits,
-- status words).
local out = {}
for i = 1, #KEYS do
  local f = redis.call("HMGET", KEYS[i], "status", "start", "end", "appointment_id",
    "hold_entry", "patient_id", "hold_expires")
  for j = 1, 7 do
    if not f[j] then
      f[j] = ""
    end
  end
  out[i] = table.concat(f, "\t")
end
return {1, "read", out}
