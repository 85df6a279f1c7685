-- Replace one doctor's hot state with what the durable store holds (a rebuild).
-- Without force it only runs when the hydrated marker is missing, so concurrent lazy rebuilds
-- after a flush apply once. Every key it deletes or writes arrives in KEYS: the caller passes
-- the slot hashes of the current slots zset members and of the store's slots; if a member has
-- appeared since the caller read the zset, it returns "retry".
-- KEYS[1] doctor slots zset  KEYS[2] ends hash  KEYS[3] open zset  KEYS[4] deadlines zset
-- KEYS[5] pending hash  KEYS[6] hydrated marker  KEYS[7..] slot hashes
-- ARGV[1] force (0 | 1)  ARGV[2] now (ms)  ARGV[3] slot key prefix (for the member check)
-- ARGV[4] n slots  then per slot 11 values: KEYS index, id, start, end, status, appointment id,
--   patient id, deadline, requested_at, start (RFC 3339), end (RFC 3339); "" = none
--   (a "held" slot, a waitlist hold: its entry id in place of the appointment id, the
--   holder as patient id, the hold's expiry in place of the deadline)
-- In-flight entries are kept as they are, not replaced by the store's version: a "pending" slot
-- (create.lua, its durable write under way) and a "locked" one (lock.lua, with its "~<id>"
-- shadow interval), so a rebuild never lets an overlapping batch or edit in meanwhile;
-- commit.lua/unlock.lua finish them. Likewise a "requested" slot the store still has "open"
-- (reserve.lua ran, the request's durable write is under way): it keeps its deadline and
-- pending entries, so it stays taken and expires on time instead of reappearing as open.
-- Only while fresh ("since" less than KEEP_MS ago, by Redis TIME): one left behind by a dead
-- process is replaced by the store's version. (A request whose store write failed and whose
-- release failed too stays taken until its deadline, when the sweeper releases it.)
-- returns {1, "rebuilt"} | {1, "skipped"} | {0, "retry"}
local KEEP_MS = 300000
if ARGV[1] ~= "1" and redis.call("EXISTS", KEYS[6]) == 1 then
  return {1, "skipped"}
end
local given = {}
for i = 7, #KEYS do
  given[KEYS[i]] = true
end
local members = redis.call("ZRANGE", KEYS[1], 0, -1)
for i = 1, #members do
  local id = members[i]
  if string.sub(id, 1, 1) == "~" then
    id = string.sub(id, 2)
  end
  if not given[ARGV[3] .. id] then
    return {0, "retry"}
  end
end
local t = redis.call("TIME")
local clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[4])
local stored = {}
for i = 1, n do
  local b = 4 + 11 * (i - 1)
  stored[KEYS[tonumber(ARGV[b + 1])]] = ARGV[b + 5]
end
local kept = {}
for i = 7, #KEYS do
  local key = KEYS[i]
  local h = redis.call("HMGET", key, "status", "since", "start", "end", "nstart", "nend",
    "appointment_id", "deadline")
  local since = tonumber(h[2])
  local in_flight = h[1] == "pending" or h[1] == "locked"
    or (h[1] == "requested" and stored[key] == "open" and h[7] and tonumber(h[8]) ~= nil)
  if in_flight and since ~= nil and clock - since < KEEP_MS then
    kept[key] = h
  else
    redis.call("DEL", key)
  end
end
for i = 1, 5 do
  redis.call("DEL", KEYS[i])
end
local plen = string.len(ARGV[3])
for key, h in pairs(kept) do
  local id = string.sub(key, plen + 1)
  redis.call("ZADD", KEYS[1], tonumber(h[3]), id)
  redis.call("HSET", KEYS[2], id, h[4])
  if h[1] == "locked" and h[5] then
    redis.call("ZADD", KEYS[1], tonumber(h[5]), "~" .. id)
    redis.call("HSET", KEYS[2], "~" .. id, h[6])
  elseif h[1] == "requested" then
    redis.call("ZADD", KEYS[4], tonumber(h[8]), h[7])
    redis.call("HSET", KEYS[5], h[7], id)
  end
end
local now = tonumber(ARGV[2])
for i = 1, n do
  local b = 4 + 11 * (i - 1)
  local key = KEYS[tonumber(ARGV[b + 1])]
  if not kept[key] then
    local id, start, status, appt = ARGV[b + 2], tonumber(ARGV[b + 3]), ARGV[b + 5], ARGV[b + 6]
    redis.call("HSET", key, "start", ARGV[b + 3], "end", ARGV[b + 4], "status", status,
      "start_s", ARGV[b + 10], "end_s", ARGV[b + 11])
    redis.call("ZADD", KEYS[1], start, id)
    redis.call("HSET", KEYS[2], id, ARGV[b + 4])
    if status == "open" then
      if start > now then
        redis.call("ZADD", KEYS[3], start, id)
      end
    elseif status == "held" then
      redis.call("HSET", key, "patient_id", ARGV[b + 7], "hold_entry", appt,
        "hold_expires", ARGV[b + 8])
    else
      redis.call("HSET", key, "appointment_id", appt, "patient_id", ARGV[b + 7])
      if status == "requested" then
        redis.call("HSET", key, "deadline", ARGV[b + 8], "requested_at", ARGV[b + 9])
        redis.call("ZADD", KEYS[4], tonumber(ARGV[b + 8]), appt)
        redis.call("HSET", KEYS[5], appt, id)
      end
    end
  end
end
redis.call("SET", KEYS[6], "1")
return {1, "rebuilt"}
