#!lua flags=allow-oom
-- KEYS: a legacy blob. ARGV: its value as read. Deletes it only if it is still that value.
expect_types({'string'})
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
