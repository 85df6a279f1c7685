-- Replace one doctor's hot waitlist with what the durable store holds (rehydration). Without
-- force it applies only while the waitlist marker is missing. Every key it deletes or writes
-- arrives in KEYS: the caller passes the keys of the entries Redis holds now and of the
-- store's entries; if an entry has appeared in Redis since the caller read it, "retry".
-- KEYS[1] waitlist hash  KEYS[2] order zset  KEYS[3] offers hash  KEYS[4] holds zset
-- KEYS[5] waitlist marker  KEYS[6..] day buckets, patient hashes and passed sets
-- ARGV[1] force (0 | 1)  ARGV[2] k = number of entry ids the caller saw in Redis, then k ids
-- then m = number of stored entries, then per entry: id, patient, from, to, seq, seat,
--   patient key index, n = number of days, then n day-bucket key indexes, offered slot or "",
--   hold expiry or "", p = passed count, then p passed-set key indexes
-- then per KEYS[6..] an absolute expiry (ms) or 0 (none)
-- returns {1, "rebuilt"} | {1, "skipped"} | {0, "retry"}
if ARGV[1] ~= "1" and redis.call("EXISTS", KEYS[5]) == 1 then
  return {1, "skipped"}
end
local at = 2
local k = tonumber(ARGV[at])
local seen = {}
for i = 1, k do
  seen[ARGV[at + i]] = true
end
at = at + k + 1
local members = redis.call("ZRANGE", KEYS[2], 0, -1)
for i = 1, #members do
  if not seen[members[i]] then
    return {0, "retry"}
  end
end
for i = 1, #KEYS do
  if i ~= 5 then
    redis.call("DEL", KEYS[i])
  end
end
local m = tonumber(ARGV[at])
at = at + 1
for _ = 1, m do
  local id, patient, from, to, seq = ARGV[at], ARGV[at + 1], ARGV[at + 2], ARGV[at + 3],
    tonumber(ARGV[at + 4])
  local seat = ARGV[at + 5]
  local pkey = tonumber(ARGV[at + 6])
  local days = tonumber(ARGV[at + 7])
  at = at + 8
  redis.call("HSET", KEYS[1], id, from .. ":" .. to .. ":" .. patient .. ":" .. seat)
  redis.call("ZADD", KEYS[2], seq, id)
  redis.call("HSET", KEYS[pkey], id, from .. ":" .. to)
  for d = 1, days do
    redis.call("ZADD", KEYS[tonumber(ARGV[at + d - 1])], seq, id)
  end
  at = at + days
  local offer, expires = ARGV[at], ARGV[at + 1]
  if offer ~= "" then
    redis.call("HSET", KEYS[3], id, offer)
    redis.call("ZADD", KEYS[4], tonumber(expires), id)
  end
  local passed = tonumber(ARGV[at + 2])
  for j = 1, passed do
    redis.call("SADD", KEYS[tonumber(ARGV[at + 2 + j])], id)
  end
  at = at + 3 + passed
end
for i = 6, #KEYS do
  local expiry = tonumber(ARGV[at + i - 6])
  if expiry ~= nil and expiry > 0 and redis.call("EXISTS", KEYS[i]) == 1 then
    redis.call("PEXPIREAT", KEYS[i], expiry)
  end
end
redis.call("SET", KEYS[5], "1")
return {1, "rebuilt"}
