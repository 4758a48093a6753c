-- Locks until ARGV[1] (never shortening a lock); the key lives ARGV[2] ms.
-- KEYS: lock
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
