-- Parks an attempt; drops the user's attempts older than PENDING_TTL before it, and the
-- oldest beyond PENDING_CAP.
-- KEYS: attempts (request id -> attempt), their times
-- ARGV: request id, attempt, time
local at = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local dropped = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', int(at - PENDING_TTL))
local excess = redis.call('ZCARD', KEYS[2]) - PENDING_CAP
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], '0', int(excess - 1))) do
    dropped[#dropped + 1] = id
  end
end
if #dropped > 0 then
  redis.call('HDEL', KEYS[1], unpack(dropped))
  redis.call('ZREM', KEYS[2], unpack(dropped))
end
redis.call('PEXPIRE', KEYS[1], int(PENDING_TTL))
redis.call('PEXPIRE', KEYS[2], int(PENDING_TTL))
return 1
