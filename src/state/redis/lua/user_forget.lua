-- Deletes every key of the user's slot; returns how many existed and the networks (IPs,
-- devices) the user was counted on, to be removed there.
-- KEYS: every key of the user, the networks index last
local networks = redis.call('ZRANGE', KEYS[#KEYS], 0, -1)
return {redis.call('DEL', unpack(KEYS)), networks}
