-- Parks an attempt; drops the user's attempts older than PENDING_TTL before it, and the
-- oldest beyond PENDING_CAP.
-- KEYS: attempts (request id -> attempt), their times
-- ARGV: request id, attempt, time
local at = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], at, ARGV[1])
local dropped = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', at - PENDING_TTL)
local excess = redis.call('ZCARD', KEYS[2]) - PENDING_CAP
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, excess - 1)) do
    dropped[#dropped + 1] = id
  end
end
for _, id in ipairs(dropped) do
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
end
redis.call('PEXPIRE', KEYS[1], PENDING_TTL)
redis.call('PEXPIRE', KEYS[2], PENDING_TTL)
return 1
