-- A user's failure times and lock, for export.
-- KEYS: failures, lock
local scores = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local times = {}
for i = 2, #scores, 2 do
  times[#times + 1] = tonumber(scores[i])
end
return {times, redis.call('GET', KEYS[2])}
