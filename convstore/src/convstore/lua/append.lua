#!lua
-- KEYS: state, turns. ARGV: ttl, then one encoded turn each.
-- Appends the turns after the last one, numbering them. Returns {0, first seq, bytes added},
-- or {1} when the conversation has no state.
expect_types({'hash', 'list'})
local cur = redis.call('HMGET', KEYS[1], F.rev, F.seq, F.bytes)
if cur[1] == false then return {1} end
number_field(cur[1], F.rev)
number_field(cur[3], F.bytes)
local first = number_field(cur[2], F.seq)
local seq, added = push_turns(KEYS[2], first, ARGV, 2)
redis.call('HSET', KEYS[1], F.seq, seq)
redis.call('HINCRBY', KEYS[1], F.bytes, added)
refresh_ttl(tonumber(ARGV[1]))
return {0, first, added}
