-- Deletes every key of the user's slot; returns how many existed.
-- KEYS: every key of the user
return redis.call('DEL', unpack(KEYS))
