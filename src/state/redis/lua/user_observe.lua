-- One attempt on the user's slot: counts its failure, notes its IP and device for erasure,
-- and returns the failure counts, the lock, and the profile (its body only when its version
-- is not the one the caller has cached).
-- KEYS: failures, failures dropped, lock, profile, networks
-- ARGV: now, failed (1/0), event member, cached profile version ('' for none), networks...
local now = tonumber(ARGV[1])
local dropped = dropped_of(KEYS[2])
if ARGV[2] == '1' then
  dropped = push(KEYS[1], KEYS[2], dropped, now, ARGV[3], USER_FAILURE_HORIZON, USER_FAILURE_CAP)
end
if #ARGV >= 5 then
  see(KEYS[5], {unpack(ARGV, 5)}, now, NETWORKS_CAP, NETWORKS_TTL)
end
local version = redis.call('HGET', KEYS[4], 'v')
local body = false
if version and version ~= ARGV[4] then
  body = redis.call('HGET', KEYS[4], 'b')
end
local reply = counts({}, KEYS[1], dropped, now,
  {USER_FAILURE_WINDOW_1, USER_FAILURE_WINDOW_2, USER_FAILURE_WINDOW_3})
reply[4], reply[5], reply[6] = redis.call('GET', KEYS[3]), version, body
return reply
