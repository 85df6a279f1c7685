-- Claim a doctor's due items for a sweep (booking's undecided requests by decision deadline,
-- the waitlist's holds by expiry), for the caller to settle. A claim is a lease: the item's
-- score moves to now + lease, so no other sweeper (any replica) sees it until the lease ends;
-- the script that settles the item (reopen.lua or accept.lua, release.lua) removes it for good.
-- A sweeper that dies mid-way leaves the item to be claimed again after the lease, and each
-- caller settles an item once (a request's store write is conditioned on its version,
-- release.lua checks the holder).
-- KEYS[1] items zset (item -> due time, ms)  KEYS[2] hash item -> slot id
-- KEYS[3] hydrated marker
-- ARGV[1] now (ms)  ARGV[2] lease (ms)  ARGV[3] max items
-- ARGV[4] "drop": a due item the hash does not map leaves the set unclaimed (a hold that
--   already ended); "" claims it with slot ""
-- returns {1, "claimed", {{item 1, slot 1}, ...}} | {0, "not_hydrated"}
-- (the caller reads the doctor's next due time itself once it has settled what it claimed)
if redis.call("EXISTS", KEYS[3]) == 0 then
  return {0, "not_hydrated"}
end
local now = tonumber(ARGV[1])
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[3]))
local claimed = {}
for i = 1, #due do
  local slot = redis.call("HGET", KEYS[2], due[i])
  if slot or ARGV[4] ~= "drop" then
    redis.call("ZADD", KEYS[1], now + tonumber(ARGV[2]), due[i])
    claimed[#claimed + 1] = {due[i], slot or ""}
  else
    redis.call("ZREM", KEYS[1], due[i])
  end
end
return {1, "claimed", claimed}
