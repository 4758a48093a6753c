-- Replaces the profile if its version is still ARGV[1] ('' for none): returns {1}, or {0,
-- version, body} of the profile found instead, to retry on.
-- KEYS: profile
-- ARGV: expected version, new version, new body, time to live (ms)
local version = redis.call('HGET', KEYS[1], 'v')
if (version or '') ~= ARGV[1] then
  return {0, version, redis.call('HGET', KEYS[1], 'b')}
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'b', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {1, false, false}
