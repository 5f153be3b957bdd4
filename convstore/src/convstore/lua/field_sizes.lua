#!lua flags=no-writes
-- KEYS: state, turns. The size of each state hash field, without sending or decoding a value:
-- {field, bytes, field, bytes, ..., turns in Redis, seconds to live}; {} when there is no state.
expect_types({'hash', 'list'})
local names = redis.call('HKEYS', KEYS[1])
if #names == 0 then return {} end
local out = {}
for _, name in ipairs(names) do
  out[#out + 1] = name
  out[#out + 1] = redis.call('HSTRLEN', KEYS[1], name)
end
out[#out + 1] = redis.call('LLEN', KEYS[2])
out[#out + 1] = redis.call('TTL', KEYS[1])
return out
