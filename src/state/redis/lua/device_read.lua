-- A device's users with the time each was last seen, for a what-if evaluation. Changes
-- nothing.
-- KEYS: users
local users, seen = seen_of(KEYS[1])
return {users, seen}
