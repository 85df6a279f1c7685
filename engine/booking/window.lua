-- Read a window of one doctor's slots in one round trip: the index entries scored in
-- [ARGV[1], ARGV[2]) (at most ARGV[3] of them when given) and the fields of each one's hash.
-- Reads only. The slot hashes are named ARGV[4] .. id: they share the doctor's hash tag with
-- KEYS (one cluster slot), and a window may hold hundreds of them, too many to pass as KEYS.
-- A pipeline of one HMGET per slot costs the client a command packed and a reply parsed per
-- slot; this costs it one of each.
-- KEYS[1] hydrated marker  KEYS[2] doctor slots zset
-- ARGV[1] min score (ms, or "(ms" exclusive)  ARGV[2] max score ("(ms")  ARGV[3] count ("" for
--   all)  ARGV[4] slot key prefix
-- returns {1, "read", entries seen, last entry's score, {per slot that is not a shadow ("~<id>",
--   a pending edit's interval) one string: id, status, start, end, appointment id, hold
--   entry, patient id, hold expires, joined by tabs ("" where the hash has no such field;
--   status "" when the hash is gone)}}
-- One string per slot, not an array: the client decodes one value per slot instead of eight
-- (none of these values can hold a tab: ids, digits, status words).
--       | {0, "not_hydrated"}
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {0, "not_hydrated"}
end
local entries
if ARGV[3] == "" then
  entries = redis.call("ZRANGEBYSCORE", KEYS[2], ARGV[1], ARGV[2], "WITHSCORES")
else
  entries = redis.call("ZRANGEBYSCORE", KEYS[2], ARGV[1], ARGV[2], "WITHSCORES", "LIMIT", 0,
    ARGV[3])
end
local last = 0
if #entries > 0 then
  last = tonumber(entries[#entries])
end
local out = {}
for i = 1, #entries, 2 do
  local id = entries[i]
  if string.sub(id, 1, 1) ~= "~" then
    local f = redis.call("HMGET", ARGV[4] .. id, "status", "start", "end", "appointment_id",
      "hold_entry", "patient_id", "hold_expires")
    local row = {id}
    for j = 1, 7 do
      row[j + 1] = f[j] or ""
    end
    out[#out + 1] = table.concat(row, "\t")
  end
end
return {1, "read", #entries / 2, last, out}
