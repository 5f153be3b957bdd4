#!lua flags=allow-oom
-- KEYS: state, turns. ARGV: incarnation, span, then the seqs copied to the archive. Removes,
-- among the first `span` items, exactly those turns: appends land at the tail and a concurrent
-- trim's removals only shift items left, so they are all still in that span. Items removed by
-- another trim are simply not found, so nothing is removed twice; a conversation re-created
-- since the copy (another incarnation) loses nothing. Returns {removed, bytes freed}. It only
-- frees memory, so it runs when Redis is full (allow-oom): trimming is how an operator frees it.
expect_types({'hash', 'list'})
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0} end
if (redis.call('HGET', KEYS[1], F.inc) or '') ~= ARGV[1] then return {0, 0} end
number_field(redis.call('HGET', KEYS[1], F.archived), F.archived)
number_field(redis.call('HGET', KEYS[1], F.bytes), F.bytes)
local copied = {}
for i = 3, #ARGV do copied[ARGV[i]] = true end
local removed, freed = 0, 0
for i, item in ipairs(redis.call('LRANGE', KEYS[2], 0, tonumber(ARGV[2]) - 1)) do
  local seq = string.match(item, '^(%d+)|')
  if seq and copied[seq] then
    redis.call('LSET', KEYS[2], i - 1, '~archived')
    removed = removed + 1
    freed = freed + #item
  end
end
if removed == 0 then return {0, 0} end
redis.call('LREM', KEYS[2], removed, '~archived')
redis.call('HINCRBY', KEYS[1], F.archived, removed)
redis.call('HINCRBY', KEYS[1], F.bytes, -freed)
return {removed, freed}
