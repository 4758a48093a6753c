-- A user's failure times, the failures dropped beyond the cap (count, time) and the lock,
-- for export; with the profile's key too, also the profile's version and (when it is not the
-- caller's cached one) its body, for a what-if evaluation. Changes nothing.
-- KEYS: failures, failures dropped, lock[, profile]
-- ARGV: [cached profile version ('' for none)]
local reply = {times_of(KEYS[1]), redis.call('HMGET', KEYS[2], 'n', 'at'), redis.call('GET', KEYS[3])}
if #KEYS >= 4 then
  local version = redis.call('HGET', KEYS[4], 'v')
  reply[4], reply[5] = version, false
  if version and version ~= ARGV[1] then
    reply[5] = redis.call('HGET', KEYS[4], 'b')
  end
end
return reply
