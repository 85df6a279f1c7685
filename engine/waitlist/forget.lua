-- Remove a waitlist entry (deleted by its patient, fulfilled by a booking, window over, or an
-- add whose durable write failed). Idempotent. The slot it held, if any, stays "held" for it:
-- the caller passes that slot on with release.lua (mode "hold"), which finds no entry left.
-- KEYS[1] waitlist hash  KEYS[2] order zset  KEYS[3] the patient's entries at this doctor
-- KEYS[4] offers hash  KEYS[5] holds zset  KEYS[5+i] day bucket i of the window (i = 1..n)
-- ARGV[1] entry id  ARGV[2] n
-- returns {1, "forgotten" | "absent", slot id held or ""}
local entry = ARGV[1]
local offered = redis.call("HGET", KEYS[4], entry)
local existed = redis.call("HDEL", KEYS[1], entry)
redis.call("ZREM", KEYS[2], entry)
redis.call("HDEL", KEYS[3], entry)
redis.call("HDEL", KEYS[4], entry)
redis.call("ZREM", KEYS[5], entry)
for i = 1, tonumber(ARGV[2]) do
  redis.call("ZREM", KEYS[5 + i], entry)
end
return {1, existed == 1 and "forgotten" or "absent", offered or ""}
