-- Takes a parked attempt: returns it and removes it, or nil.
-- KEYS: attempts, their times
-- ARGV: request id
local attempt = redis.call('HGET', KEYS[1], ARGV[1])
if attempt then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return attempt
