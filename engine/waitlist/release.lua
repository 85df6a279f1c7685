-- Free a slot and decide, in one atomic step, who gets it next: the earliest waitlist entry
-- (FCFS) whose window covers the slot, as a hold with an expiry, or else everyone (open).
-- Every path that frees a slot runs this script (cancel, refuse, expiry, a reservation rolled
-- back, a declined, deleted or lapsed hold, a new or edited slot), so a slot is never both
-- open and held and never held for two entries.
-- KEYS[1] slot hash  KEYS[2] open zset  KEYS[3] deadlines zset  KEYS[4] pending hash
-- KEYS[5] slots hydrated marker  KEYS[6] waitlist hash (entry -> "from:to:patient:seat")
-- KEYS[7] offers hash (entry -> slot id)  KEYS[8] holds zset (entry -> hold expiry, ms)
-- KEYS[9] waitlist hydrated marker  KEYS[10] passed set of this slot (entries that declined
-- or let lapse this slot)  KEYS[11] day bucket of the slot's start (entry -> FCFS seq)
-- ARGV[1] mode: "appt" (ARGV[2] = the appointment releasing it), "hold" (ARGV[2] = the entry
--   whose hold ends), "slot" (a new slot still "pending" after its durable write, in place of
--   commit.lua, or an edited "open" one; ARGV[2] = "")
-- ARGV[2] id  ARGV[3] slot id  ARGV[4] now (ms)  ARGV[5] hold length (ms)
-- ARGV[6] decision lead (ms): no hold past start - lead (nobody could book it then)
-- ARGV[7] start (ms) the caller believes  ARGV[8] end (ms)  ARGV[9] channel
-- ARGV[10] slot.updated frame (status "open")  ARGV[11] "pass" (the entry declined or let the
--   hold lapse: it is not offered this slot again), "undo" (mode appt: a reservation rolled
--   back; a slot held for its requester returns to that hold), "open" (opened to everyone,
--   never held: time off is about to delete it) or ""
-- ARGV[12] "due": mode hold only if the hold's expiry has passed (the sweeper), else ""
-- returns {1, "held", start, end, entry, expires, seq, previous status} (the slot is held for
--   that entry until expires; seq is the entry's FCFS seq)
--   | {1, "opened"} (published open) | {1, "freed"} (released but started: not bookable)
--   | {1, "restored"} (mode appt undo: held again for the requester, until the original
--   expiry) | {1, "already"} (nothing to release: a repeat) | {1, "not_due"} (ARGV[12] "due"
--   and the hold has not expired yet) | {0, "not_hydrated" | "not_hydrated_waitlist"}
--   | {0, "moved", start, end} (the slot's times differ: the caller passed the wrong day bucket
--   and retries with these)
-- Cost: the bucket is scanned in FCFS order and the first covering entry wins. An entry that
-- intersects the day but does not cover the slot has a window edge on that day, so the
-- scan passes at most (entries with an edge that day + entries holding an offer + entries
-- that passed this slot) before it stops: bounded, whatever the waitlist's length.
if redis.call("EXISTS", KEYS[5]) == 0 then
  return {0, "not_hydrated"}
end
if redis.call("EXISTS", KEYS[9]) == 0 then
  return {0, "not_hydrated_waitlist"}
end
local mode = ARGV[1]
local id = ARGV[2]
local slot = ARGV[3]
local now = tonumber(ARGV[4])
local s = redis.call("HMGET", KEYS[1], "status", "appointment_id", "start", "end",
  "hold_entry", "hold_expires", "patient_id")
local status = s[1]
if mode == "appt" then
  redis.call("ZREM", KEYS[3], id)
  redis.call("HDEL", KEYS[4], id)
  if s[2] ~= id or (status ~= "requested" and status ~= "booked") then
    return {1, "already"}
  end
elseif mode == "hold" then
  if status ~= "held" or s[5] ~= id then
    -- Stale (the holder booked, or a repeat): forget this hold only, never a newer one.
    local offered = redis.call("HGET", KEYS[7], id)
    if offered == slot or offered == false then
      redis.call("HDEL", KEYS[7], id)
      redis.call("ZREM", KEYS[8], id)
    end
    return {1, "already"}
  end
  if ARGV[12] == "due" and tonumber(s[6]) > now then
    return {1, "not_due"}
  end
elseif status ~= "open" and status ~= "pending" then
  return {1, "already"}
end
local start = tonumber(s[3])
local stop = tonumber(s[4])
if start ~= tonumber(ARGV[7]) or stop ~= tonumber(ARGV[8]) then
  return {0, "moved", start, stop}
end
-- The slot is free from here on.
if mode == "hold" then
  redis.call("ZREM", KEYS[8], id)
  redis.call("HDEL", KEYS[7], id)
  if ARGV[11] == "pass" then
    redis.call("SADD", KEYS[10], id)
    redis.call("PEXPIREAT", KEYS[10], start)
  end
end
local since_t = redis.call("TIME")
local since = tonumber(since_t[1]) * 1000 + math.floor(tonumber(since_t[2]) / 1000)
local function hold(entry, patient, expires)
  redis.call("HSET", KEYS[1], "status", "held", "patient_id", patient, "hold_entry", entry,
    "hold_expires", expires, "since", since)
  redis.call("HDEL", KEYS[1], "appointment_id", "deadline", "requested_at")
  redis.call("ZREM", KEYS[2], slot)
  redis.call("HSET", KEYS[7], entry, slot)
  redis.call("ZADD", KEYS[8], expires, entry)
end
-- A reservation rolled back: the slot it took from its own hold goes back to that hold.
if mode == "appt" and ARGV[11] == "undo" and s[5] and tonumber(s[6]) ~= nil
    and tonumber(s[6]) > now and redis.call("HEXISTS", KEYS[6], s[5]) == 1
    and redis.call("HEXISTS", KEYS[7], s[5]) == 0 then
  hold(s[5], s[7], tonumber(s[6]))
  return {1, "restored"}
end
redis.call("HSET", KEYS[1], "status", "open")
redis.call("HDEL", KEYS[1], "appointment_id", "patient_id", "deadline", "requested_at",
  "hold_entry", "hold_expires", "since")
if start <= now then
  redis.call("ZREM", KEYS[2], slot)
  return {1, "freed"}
end
local expires = now + tonumber(ARGV[5])
local lead_limit = start - tonumber(ARGV[6])
if lead_limit < expires then
  expires = lead_limit
end
if expires > now and ARGV[11] ~= "open" and redis.call("HLEN", KEYS[6]) > 0 then
  local batch = 64
  local at = 0
  while true do
    local members = redis.call("ZRANGE", KEYS[11], at, at + batch - 1, "WITHSCORES")
    if #members == 0 then
      break
    end
    for i = 1, #members, 2 do
      local entry = members[i]
      if redis.call("HEXISTS", KEYS[7], entry) == 0
          and redis.call("SISMEMBER", KEYS[10], entry) == 0 then
        local value = redis.call("HGET", KEYS[6], entry)
        if value then
          local from, to, patient = string.match(value, "^(%d+):(%d+):([^:]+):")
          if tonumber(from) <= start and tonumber(to) >= stop then
            hold(entry, patient, expires)
            return {1, "held", start, stop, entry, expires, tonumber(members[i + 1]), status}
          end
        end
      end
    end
    at = at + batch
  end
end
redis.call("ZADD", KEYS[2], start, slot)
if status ~= "open" then
  redis.call("PUBLISH", ARGV[9], ARGV[10])
end
return {1, "opened"}
