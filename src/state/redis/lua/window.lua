-- Sliding windows as sorted sets scored by event time (ms). Prepended to every script, after
-- the constants riskgate generates (the horizons, caps and windows of src/state).

-- Records an event at `at` under a unique `member`; keeps `horizon` ms before the newest
-- event and at most `cap` events; the key lives `horizon` ms past its last event.
local function push(key, at, member, horizon, cap)
  redis.call('ZADD', key, at, member)
  local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', newest - horizon)
  local excess = redis.call('ZCARD', key) - cap
  if excess > 0 then
    redis.call('ZREMRANGEBYRANK', key, 0, excess - 1)
  end
  redis.call('PEXPIRE', key, horizon)
end

-- Events (or distinct ids) with now - window < time <= now.
local function count(key, now, window)
  return redis.call('ZCOUNT', key, '(' .. (now - window), now)
end

-- Records distinct `id` as seen at `at` (never earlier than it was); beyond `cap` ids, the
-- one seen longest ago is forgotten.
local function see(key, id, at, cap, ttl)
  redis.call('ZADD', key, 'GT', at, id)
  if redis.call('ZCARD', key) > cap then
    redis.call('ZPOPMIN', key)
  end
  redis.call('PEXPIRE', key, ttl)
end
