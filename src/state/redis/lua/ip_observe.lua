-- One attempt (or a failure reported later) on the IP's slot; returns its counts.
-- KEYS: failures, attempts, users
-- ARGV: now, failed (1/0), attempt (1/0: count the attempt and its user), event member, user
local now = tonumber(ARGV[1])
if ARGV[2] == '1' then
  push(KEYS[1], now, ARGV[4], IP_FAILURE_HORIZON, IP_FAILURE_CAP)
end
if ARGV[3] == '1' then
  push(KEYS[2], now, ARGV[4], IP_ATTEMPT_HORIZON, IP_ATTEMPT_CAP)
  see(KEYS[3], ARGV[5], now, DISTINCT_USERS, DISTINCT_USERS_TTL)
end
return {
  count(KEYS[1], now, IP_FAILURE_WINDOW_1), count(KEYS[1], now, IP_FAILURE_WINDOW_2),
  count(KEYS[1], now, IP_FAILURE_WINDOW_3), count(KEYS[2], now, IP_ATTEMPT_WINDOW),
  count(KEYS[3], now, IP_USER_WINDOW_1), count(KEYS[3], now, IP_USER_WINDOW_2),
}
