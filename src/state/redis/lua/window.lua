-- Sliding windows as sorted sets scored by event time (ms). Prepended to every script, after
-- the constants riskgate generates (the horizons, caps and windows of src/state).

-- The events dropped from a window beyond its cap, kept in hash `key` (n: how many, at:
-- the newest of them) as EventWindow does: {n, at}, or nil.
local function dropped_of(key)
  local dropped = redis.call('HMGET', key, 'n', 'at')
  if dropped[1] and dropped[2] then
    return {tonumber(dropped[1]), tonumber(dropped[2])}
  end
  return nil
end

-- Records an event at `at` under a unique `member`; keeps `horizon` ms before the newest
-- event and at most `cap` events, counting the older ones in `dropped` (read with
-- dropped_of from `dropped_key`); returns `dropped` updated. The keys live `horizon` ms past
-- their last change.
local function push(key, dropped_key, dropped, at, member, horizon, cap)
  redis.call('ZADD', key, at, member)
  local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', newest - horizon)
  if dropped and dropped[2] <= newest - horizon then
    redis.call('DEL', dropped_key)
    dropped = nil
  end
  local excess = redis.call('ZCARD', key) - cap
  if excess > 0 then
    local oldest = redis.call('ZRANGE', key, 0, excess - 1, 'WITHSCORES')
    local last = tonumber(oldest[#oldest])
    redis.call('ZREMRANGEBYRANK', key, 0, excess - 1)
    if dropped then
      dropped = {dropped[1] + excess, math.max(dropped[2], last)}
    else
      dropped = {excess, last}
    end
    redis.call('HSET', dropped_key, 'n', dropped[1], 'at', dropped[2])
    redis.call('PEXPIRE', dropped_key, horizon)
  end
  redis.call('PEXPIRE', key, horizon)
  return dropped
end

-- Events with now - window < time <= now, the dropped ones included.
local function count(key, dropped, now, window)
  local n = redis.call('ZCOUNT', key, string.format('(%d', now - window), now)
  if dropped and dropped[2] > now - window and dropped[2] <= now then
    n = n + dropped[1]
  end
  return n
end

-- Distinct ids with now - window < last seen <= now.
local function count_distinct(key, now, window)
  return redis.call('ZCOUNT', key, string.format('(%d', now - window), now)
end

-- Records distinct `id` as seen at `at` (never earlier than it was). When it is new, ids
-- not seen within `ttl` before it are forgotten, and beyond `cap` ids the one seen longest
-- ago; an id seen again (the common case) costs two calls.
local function see(key, id, at, cap, ttl)
  if redis.call('ZADD', key, 'GT', at, id) == 1 then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', at - ttl)
    if redis.call('ZCARD', key) > cap then
      redis.call('ZPOPMIN', key)
    end
  end
  redis.call('PEXPIRE', key, ttl)
end
