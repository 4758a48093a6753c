-- A user's failure times, the failures dropped beyond the cap (count, time) and the lock,
-- for export.
-- KEYS: failures, failures dropped, lock
local scores = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local times = {}
for i = 2, #scores, 2 do
  times[#times + 1] = tonumber(scores[i])
end
return {times, redis.call('HMGET', KEYS[2], 'n', 'at'), redis.call('GET', KEYS[3])}
