-- One attempt on the device's slot; returns the distinct users on it.
-- KEYS: users
-- ARGV: now, user
local now = tonumber(ARGV[1])
see(KEYS[1], {ARGV[2]}, now, DISTINCT_USERS, DISTINCT_USERS_TTL)
return count_distinct_with(KEYS[1], now, {DEVICE_USER_WINDOW}, ARGV[2])[1]
