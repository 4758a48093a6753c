-- An IP's windows as they are, for a what-if evaluation: failure times, failures dropped
-- (count, time), attempt times, attempts dropped, and the users tried from it with the time
-- each was last seen. Changes nothing.
-- KEYS: failures, failures dropped, attempts, attempts dropped, users
local users, seen = seen_of(KEYS[5])
return {times_of(KEYS[1]), redis.call('HMGET', KEYS[2], 'n', 'at'),
  times_of(KEYS[3]), redis.call('HMGET', KEYS[4], 'n', 'at'), users, seen}
