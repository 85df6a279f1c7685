-- Put a doctor's card in the directory, or take it out, moving it between specialties in one
-- atomic step: a doctor is never listed under two specialties, whatever edits race, and a
-- specialty left with no doctor leaves the specialty list.
-- KEYS[1] card hash  KEYS[2] geo (all)  KEYS[3] rating index (all)  KEYS[4] specialty list
-- KEYS[5] geo (old specialty)  KEYS[6] rating index (old specialty)
-- KEYS[7] geo (new specialty)  KEYS[8] rating index (new specialty)   (5-8 all under {dir})
-- ARGV[1] doctor id  ARGV[2] the old specialty the caller read ("" none)
-- ARGV[3] new specialty ("" to remove the doctor)  ARGV[4] lon  ARGV[5] lat  ARGV[6] score
-- ARGV[7..] card fields, name/value pairs
-- returns {1, "done"} | {0, "changed"} (the card's specialty is no longer ARGV[2]: read again)
local current = redis.call("HGET", KEYS[1], "specialty") or ""
if current ~= ARGV[2] then
  return {0, "changed"}
end
local id = ARGV[1]
local new = ARGV[3]
if current ~= "" and current ~= new then
  redis.call("ZREM", KEYS[5], id)
  redis.call("ZREM", KEYS[6], id)
  if redis.call("ZCARD", KEYS[5]) == 0 then
    redis.call("ZREM", KEYS[4], current)
  end
end
if new == "" then
  redis.call("ZREM", KEYS[2], id)
  redis.call("ZREM", KEYS[3], id)
  redis.call("DEL", KEYS[1])
  return {1, "done"}
end
local fields = {}
for i = 7, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[1], unpack(fields))
local lon, lat = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call("GEOADD", KEYS[7], lon, lat, id)
redis.call("GEOADD", KEYS[2], lon, lat, id)
local score = tonumber(ARGV[6])
redis.call("ZADD", KEYS[3], score, id)
redis.call("ZADD", KEYS[8], score, id)
redis.call("ZADD", KEYS[4], 0, new)
return {1, "done"}
