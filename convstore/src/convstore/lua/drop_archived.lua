#!lua flags=allow-oom
-- KEYS: state, turns. ARGV: rev, seq, incarnation. Deletes a session archived whole, unless a
-- write (which moves rev or seq) came after it was read, or it was re-created since (another
-- incarnation): 1 dropped, 0 written since, -1 already gone.
expect_types({'hash', 'list'})
local cur = redis.call('HMGET', KEYS[1], F.rev, F.seq, F.inc)
if cur[1] == false then return -1 end
if cur[1] ~= ARGV[1] or cur[2] ~= ARGV[2] or (cur[3] or '') ~= ARGV[3] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
