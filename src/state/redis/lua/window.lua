-- Sliding windows as sorted sets scored by event time (ms). Prepended to every script, after
-- the constants riskgate generates (the horizons, caps and windows of src/state).
--
-- Each redis.call costs more than the command it runs, so the functions make as few as they
-- can, and they pass numbers as integer text: a Lua number handed to redis.call is formatted
-- as a float, which costs more than most of these commands.

local function int(n)
  return string.format('%d', n)
end

-- The events dropped from a window beyond its cap, kept in hash `key` (n: how many, at:
-- the newest of them) as EventWindow does: {n, at}, or nil.
local function dropped_of(key)
  local dropped = redis.call('HMGET', key, 'n', 'at')
  if dropped[1] and dropped[2] then
    return {tonumber(dropped[1]), tonumber(dropped[2])}
  end
  return nil
end

-- The times of a window's events, oldest first.
local function times_of(key)
  local scores = redis.call('ZRANGE', key, '0', '-1', 'WITHSCORES')
  local times = {}
  for i = 2, #scores, 2 do
    times[#times + 1] = tonumber(scores[i])
  end
  return times
end

-- A distinct-id window's ids and the time each was last seen, as two lists.
local function seen_of(key)
  local scores = redis.call('ZRANGE', key, '0', '-1', 'WITHSCORES')
  local ids, times = {}, {}
  for i = 1, #scores, 2 do
    ids[#ids + 1] = scores[i]
    times[#times + 1] = tonumber(scores[i + 1])
  end
  return ids, times
end

-- Records an event at `at` under a unique `member`; keeps `horizon` ms before the newest
-- event and at most `cap` events, counting the older ones in `dropped` (read with
-- dropped_of from `dropped_key`); returns `dropped` updated. The keys live `horizon` ms past
-- their last change.
local function push(key, dropped_key, dropped, at, member, horizon, cap)
  redis.call('ZADD', key, int(at), member)
  local newest = tonumber(redis.call('ZRANGE', key, '-1', '-1', 'WITHSCORES')[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(newest - horizon))
  if dropped and dropped[2] <= newest - horizon then
    redis.call('DEL', dropped_key)
    dropped = nil
  end
  local excess = redis.call('ZCARD', key) - cap
  if excess > 0 then
    local oldest = redis.call('ZRANGE', key, '0', int(excess - 1), 'WITHSCORES')
    local last = tonumber(oldest[#oldest])
    redis.call('ZREMRANGEBYRANK', key, '0', int(excess - 1))
    if dropped then
      dropped = {dropped[1] + excess, math.max(dropped[2], last)}
    else
      dropped = {excess, last}
    end
    redis.call('HSET', dropped_key, 'n', int(dropped[1]), 'at', int(dropped[2]))
    redis.call('PEXPIRE', dropped_key, int(horizon))
  end
  redis.call('PEXPIRE', key, int(horizon))
  return dropped
end

-- Events with now - span < time <= now, the dropped ones included.
local function count(key, dropped, now, span)
  local n = redis.call('ZCOUNT', key, '(' .. int(now - span), int(now))
  if dropped and dropped[2] > now - span and dropped[2] <= now then
    n = n + dropped[1]
  end
  return n
end

-- count for each of `spans` (widest last), appended to `into`. The windows nest, so when the
-- widest holds nothing, neither do the others, and they cost no call.
local function counts(into, key, dropped, now, spans)
  local widest = count(key, dropped, now, spans[#spans])
  for i = 1, #spans - 1 do
    into[#into + 1] = widest > 0 and count(key, dropped, now, spans[i]) or 0
  end
  into[#into + 1] = widest
  return into
end

-- Distinct ids with now - span < last seen <= now.
local function count_distinct(key, now, span)
  return redis.call('ZCOUNT', key, '(' .. int(now - span), int(now))
end

-- count_distinct over each of `spans` for an attempt by `own` at `now`, which counts itself
-- even when it arrived late (ids keep only their newest time, and own's may be after now).
local function count_distinct_with(key, now, spans, own)
  local last = redis.call('ZSCORE', key, own)
  local late = (last and tonumber(last) > now) and 1 or 0
  local counts = {}
  for i, span in ipairs(spans) do
    counts[i] = count_distinct(key, now, span) + late
  end
  return counts
end

-- Records each distinct id of `ids` as seen at `at` (never earlier than it was). When one is
-- new, ids not seen within `ttl` before it are forgotten, and beyond `cap` ids the one seen
-- longest ago; an id seen again (the common case) costs one call, and the key's expiry one
-- for all.
local function see(key, ids, at, cap, ttl)
  local score = int(at)
  for _, id in ipairs(ids) do
    if redis.call('ZADD', key, 'GT', score, id) == 1 then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', int(at - ttl))
      if redis.call('ZCARD', key) > cap then
        redis.call('ZPOPMIN', key)
      end
    end
  end
  redis.call('PEXPIRE', key, int(ttl))
end
