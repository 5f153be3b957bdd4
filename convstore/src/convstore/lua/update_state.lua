#!lua
-- KEYS: state, turns. ARGV: ttl, expected rev, bot_config digest ('' keeps it), whole (1: the
-- fields given are the whole state, drop the others), field count n, n pairs of state field
-- and encoded value, then one encoded turn each, appended. Writes only if the rev is still the
-- expected one. Returns {0, new rev, bytes delta, first seq of the turns}, {1} no state,
-- {2, rev} stale, {3} state stored as one doc.
expect_types({'hash', 'list'})
local cur = redis.call('HMGET', KEYS[1], F.rev, F.seq, F.bytes, F.doc)
if cur[1] == false then return {1} end
local rev = number_field(cur[1], F.rev)
local first = number_field(cur[2], F.seq)
number_field(cur[3], F.bytes)
if cur[4] ~= false then return {3} end
if rev ~= tonumber(ARGV[2]) then return {2, rev} end
local n, delta, fields, given = tonumber(ARGV[5]), 0, {}, {}
for i = 6, 5 + 2 * n, 2 do
  delta = delta + #ARGV[i + 1] - redis.call('HSTRLEN', KEYS[1], ARGV[i])
  add_field(fields, ARGV[i], ARGV[i + 1])
  given[ARGV[i]] = true
end
if ARGV[4] == '1' then
  local prefix = #F.state_prefix
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if string.sub(name, 1, prefix) == F.state_prefix and not given[name] then
      delta = delta - redis.call('HSTRLEN', KEYS[1], name)
      redis.call('HDEL', KEYS[1], name)
    end
  end
end
if ARGV[3] ~= '' then
  add_field(fields, F.cfg, ARGV[3])
end
local seq, added = push_turns(KEYS[2], first, ARGV, 6 + 2 * n)
add_field(fields, F.rev, rev + 1)
add_field(fields, F.seq, seq)
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HINCRBY', KEYS[1], F.bytes, delta + added)
refresh_ttl(tonumber(ARGV[1]))
return {0, rev + 1, delta + added, first}
