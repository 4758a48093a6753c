-- One attempt (or a failure reported later) on the IP's slot; returns its counts.
-- KEYS: failures, failures dropped, attempts, attempts dropped, users
-- ARGV: now, failed (1/0), attempt (1/0: count the attempt and its user), event member, user
local now = tonumber(ARGV[1])
local failures_dropped = dropped_of(KEYS[2])
local attempts_dropped = dropped_of(KEYS[4])
if ARGV[2] == '1' then
  failures_dropped = push(KEYS[1], KEYS[2], failures_dropped, now, ARGV[4],
    IP_FAILURE_HORIZON, IP_FAILURE_CAP)
end
if ARGV[3] == '1' then
  attempts_dropped = push(KEYS[3], KEYS[4], attempts_dropped, now, ARGV[4],
    IP_ATTEMPT_HORIZON, IP_ATTEMPT_CAP)
  see(KEYS[5], {ARGV[5]}, now, DISTINCT_USERS, DISTINCT_USERS_TTL)
end
local reply = counts({}, KEYS[1], failures_dropped, now,
  {IP_FAILURE_WINDOW_1, IP_FAILURE_WINDOW_2, IP_FAILURE_WINDOW_3})
reply[4] = count(KEYS[3], attempts_dropped, now, IP_ATTEMPT_WINDOW)
if ARGV[3] == '1' then
  local users = count_distinct_with(KEYS[5], now, {IP_USER_WINDOW_1, IP_USER_WINDOW_2}, ARGV[5])
  reply[5], reply[6] = users[1], users[2]
else
  reply[5] = count_distinct(KEYS[5], now, IP_USER_WINDOW_1)
  reply[6] = count_distinct(KEYS[5], now, IP_USER_WINDOW_2)
end
return reply
