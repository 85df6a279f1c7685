-- Claim the doctor's waitlist holds whose expiry has passed, for the caller to pass on. A claim
-- is a lease (as sweep.lua's): the score moves to now + lease, so no other replica takes it
-- meanwhile; release.lua removes it for good. A replica that dies mid-way leaves it to be
-- claimed again after the lease, and release.lua passes a hold on once (it checks the holder).
-- KEYS[1] holds zset (entry -> expiry ms)  KEYS[2] offers hash (entry -> slot id)
-- KEYS[3] waitlist marker
-- ARGV[1] now (ms)  ARGV[2] lease (ms)  ARGV[3] max items
-- returns {1, next expiry or -1, entry 1, slot 1, ...} | {0, "not_hydrated"}
if redis.call("EXISTS", KEYS[3]) == 0 then
  return {0, "not_hydrated"}
end
local now = tonumber(ARGV[1])
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[3]))
local out = {1, -1}
for i = 1, #due do
  local slot = redis.call("HGET", KEYS[2], due[i])
  if slot then
    redis.call("ZADD", KEYS[1], now + tonumber(ARGV[2]), due[i])
    out[#out + 1] = due[i]
    out[#out + 1] = slot
  else
    redis.call("ZREM", KEYS[1], due[i])
  end
end
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
if #first > 0 then
  out[2] = tonumber(first[2])
end
return out
