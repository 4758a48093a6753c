-- Sliding windows as sorted sets scored by event time (ms). Prepended to every script, after
-- the constants riskgate generates (the horizons, caps and windows of src/state).

-- Records an event at `at` under a unique `member`; keeps `horizon` ms before the newest
-- event and at most `cap` events, counting the older ones in hash `dropped` (n: how many,
-- at: the newest of them) as EventWindow does; the keys live `horizon` ms past the last event.
local function push(key, dropped, at, member, horizon, cap)
  redis.call('ZADD', key, at, member)
  local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', newest - horizon)
  local dropped_at = tonumber(redis.call('HGET', dropped, 'at') or '')
  if dropped_at and dropped_at <= newest - horizon then
    redis.call('DEL', dropped)
    dropped_at = nil
  end
  local excess = redis.call('ZCARD', key) - cap
  if excess > 0 then
    local oldest = redis.call('ZRANGE', key, 0, excess - 1, 'WITHSCORES')
    local last = tonumber(oldest[#oldest])
    redis.call('ZREMRANGEBYRANK', key, 0, excess - 1)
    redis.call('HINCRBY', dropped, 'n', excess)
    if not dropped_at or last > dropped_at then
      redis.call('HSET', dropped, 'at', last)
    end
  end
  redis.call('PEXPIRE', key, horizon)
  redis.call('PEXPIRE', dropped, horizon)
end

-- Events with now - window < time <= now, the dropped ones included.
local function count(key, dropped, now, window)
  local n = redis.call('ZCOUNT', key, string.format('(%d', now - window), now)
  local earlier = redis.call('HMGET', dropped, 'n', 'at')
  local at = tonumber(earlier[2] or '')
  if at and at > now - window and at <= now then
    n = n + tonumber(earlier[1])
  end
  return n
end

-- Distinct ids with now - window < last seen <= now.
local function count_distinct(key, now, window)
  return redis.call('ZCOUNT', key, string.format('(%d', now - window), now)
end

-- Records distinct `id` as seen at `at` (never earlier than it was); ids not seen within
-- `ttl` before it are forgotten, and beyond `cap` ids the one seen longest ago.
local function see(key, id, at, cap, ttl)
  redis.call('ZADD', key, 'GT', at, id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', at - ttl)
  if redis.call('ZCARD', key) > cap then
    redis.call('ZPOPMIN', key)
  end
  redis.call('PEXPIRE', key, ttl)
end
