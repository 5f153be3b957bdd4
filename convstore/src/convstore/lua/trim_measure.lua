#!lua flags=no-writes
-- KEYS: state, turns. ARGV: pinned, keep. How many turns, and bytes, a trim would move.
expect_types({'hash', 'list'})
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local items = redis.call('LRANGE', KEYS[2], ARGV[1], -tonumber(ARGV[2]) - 1)
local bytes = 0
for _, item in ipairs(items) do bytes = bytes + #item end
return {#items, bytes}
