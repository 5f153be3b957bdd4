#!lua
-- KEYS: state, turns. ARGV: ttl, field count n, n pairs of state hash field and value (its
-- byte count among them), then whole turn items. Puts an archived session back; refuses ({1})
-- when either key exists. Returns {0}.
expect_types({'hash', 'list'})
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return {1} end
local n = tonumber(ARGV[2])
local fields = {}
for i = 3, 2 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
local batch = {}
for i = 3 + 2 * n, #ARGV do
  batch[#batch + 1] = ARGV[i]
  if #batch == 1000 then
    redis.call('RPUSH', KEYS[2], unpack(batch))
    batch = {}
  end
end
if #batch > 0 then redis.call('RPUSH', KEYS[2], unpack(batch)) end
refresh_ttl(tonumber(ARGV[1]))
return {0}
