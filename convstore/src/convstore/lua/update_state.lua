#!lua
-- KEYS: state, turns. ARGV: ttl, expected rev, bot_config digest ('' keeps it), whole (1: the
-- fields given are the whole state, drop the others), counts n, g and m, then n pairs of state
-- field and encoded value, g field prefixes (a key written anew: its sub-key fields not given
-- go), m state fields that must hold the split marker (keys merged into), then one encoded
-- turn each, appended. Writes only if the rev is still the expected one. Returns {0, new rev,
-- bytes delta, first seq of the turns}, {1} no state, {2, rev} stale, {3} state stored as one
-- doc, {5, i} the i-th (from 0) key merged into is not stored split: nothing written.
expect_types({'hash', 'list'})
local cur = redis.call('HMGET', KEYS[1], F.rev, F.seq, F.bytes, F.doc)
if cur[1] == false then return {1} end
local rev = number_field(cur[1], F.rev)
local first = number_field(cur[2], F.seq)
number_field(cur[3], F.bytes)
if cur[4] ~= false then return {3} end
if rev ~= tonumber(ARGV[2]) then return {2, rev} end
local n, g, m = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local groups = 8 + 2 * n
local markers = groups + g
for i = markers, markers + m - 1 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= SPLIT_MARKER then return {5, i - markers} end
end
local delta, fields, given, split = 0, {}, {}, false
for i = 8, 7 + 2 * n, 2 do
  delta = delta + #ARGV[i + 1] - redis.call('HSTRLEN', KEYS[1], ARGV[i])
  add_field(fields, ARGV[i], ARGV[i + 1])
  given[ARGV[i]] = true
  split = split or ARGV[i + 1] == SPLIT_MARKER
end
local drop = {}
if ARGV[4] == '1' then
  drop = {F.state_prefix, F.split_prefix}
else
  for i = groups, markers - 1 do drop[#drop + 1] = ARGV[i] end
end
if #drop > 0 then
  for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
    if not given[name] and has_prefix(name, drop) then
      delta = delta - redis.call('HSTRLEN', KEYS[1], name)
      redis.call('HDEL', KEYS[1], name)
    end
  end
end
if ARGV[3] ~= '' then
  add_field(fields, F.cfg, ARGV[3])
end
if split then
  add_field(fields, F.layout, LAYOUT_VERSION)
end
local seq, added = push_turns(KEYS[2], first, ARGV, markers + m)
add_field(fields, F.rev, rev + 1)
add_field(fields, F.seq, seq)
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HINCRBY', KEYS[1], F.bytes, delta + added)
refresh_ttl(tonumber(ARGV[1]))
return {0, rev + 1, delta + added, first}
