#!lua
-- KEYS: state, turns. ARGV: ttl, rev of a new conversation, bot_config digest ('' none),
-- create only (1: refuse when it exists), incarnation of a new conversation, field count n,
-- n pairs of state field and encoded value, then one encoded turn each. Creates or replaces the
-- whole conversation. A replace carries on its incarnation, sequence numbers and archived count,
-- so Redis and the archive never disagree on a turn; a creation starts a new incarnation.
-- Returns {0, rev, first seq, bytes before, bytes after, created (0/1)}, or {4} when it exists
-- and create only was asked.
expect_types({'hash', 'list'})
local cur = redis.call('HMGET', KEYS[1], F.rev, F.seq, F.bytes, F.archived, F.inc)
local exists = cur[1] ~= false
if exists and ARGV[4] == '1' then return {4} end
local rev = tonumber(ARGV[2])
if exists then rev = number_field(cur[1], F.rev) + 1 end
local first = number_field(cur[2], F.seq)
local before = number_field(cur[3], F.bytes)
local archived = number_field(cur[4], F.archived)
local inc = ARGV[5]
if exists then inc = cur[5] or '' end
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[6])
local fields, size = {F.rev, rev, F.archived, archived, F.inc, inc, F.layout, LAYOUT_VERSION}, 0
for i = 7, 6 + 2 * n, 2 do
  add_field(fields, ARGV[i], ARGV[i + 1])
  size = size + #ARGV[i + 1]
end
if ARGV[3] ~= '' then
  add_field(fields, F.cfg, ARGV[3])
end
local seq, added = push_turns(KEYS[2], first, ARGV, 7 + 2 * n)
add_field(fields, F.seq, seq)
add_field(fields, F.bytes, size + added)
redis.call('HSET', KEYS[1], unpack(fields))
refresh_ttl(tonumber(ARGV[1]))
return {0, rev, first, before, size + added, exists and 0 or 1}
