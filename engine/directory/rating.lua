-- KEYS[1] doctor card hash  KEYS[2] rating index (all)  KEYS[3] rating index (specialty)
-- ARGV[1] rating count  ARGV[2] average ("" when unrated)  ARGV[3] index score
-- returns {1, "applied"} | {0, "ignored"} (the card is gone or already holds this count or a
-- newer one)
--
-- Ratings only ever grow in count, so the count orders concurrent updates: an update that
-- arrives after a newer one is dropped instead of overwriting it.
if redis.call('EXISTS', KEYS[1]) == 0 then
    return {0, "ignored"}
end
local count = tonumber(ARGV[1])
local current = tonumber(redis.call('HGET', KEYS[1], 'count') or '-1') or -1
if count <= current then
    return {0, "ignored"}
end
redis.call('HSET', KEYS[1], 'avg', ARGV[2], 'count', ARGV[1])
local score = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], 'XX', score, redis.call('HGET', KEYS[1], 'id'))
redis.call('ZADD', KEYS[3], 'XX', score, redis.call('HGET', KEYS[1], 'id'))
return {1, "applied"}
