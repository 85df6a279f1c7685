-- Claim the doctor's requests whose decision deadline has passed, for expiry by this caller.
-- A claim is a lease: the item's score moves to now + lease, so no other sweeper (any replica)
-- sees it until the lease ends; reopen.lua or accept.lua remove it for good. A sweeper that dies
-- mid-way leaves the item to be claimed again after the lease, and the durable write is
-- conditioned on the appointment's version, so an item is never expired twice.
-- KEYS[1] deadlines zset  KEYS[2] pending hash  KEYS[3] hydrated marker
-- ARGV[1] now (ms)  ARGV[2] lease (ms)  ARGV[3] max items
-- returns {1, "claimed", {{appointment id 1, slot id 1}, ...}} | {0, "not_hydrated"}
-- (the caller reads the doctor's next deadline itself once it has expired what it claimed)
if redis.call("EXISTS", KEYS[3]) == 0 then
  return {0, "not_hydrated"}
end
local now = tonumber(ARGV[1])
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[3]))
local claimed = {}
for i = 1, #due do
  redis.call("ZADD", KEYS[1], now + tonumber(ARGV[2]), due[i])
  local slot = redis.call("HGET", KEYS[2], due[i])
  claimed[#claimed + 1] = {due[i], slot or ""}
end
return {1, "claimed", claimed}
