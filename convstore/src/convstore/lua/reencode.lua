#!lua
-- KEYS: state, turns. ARGV: n, then n triples of state field, old value, new value, then pairs
-- of old and new turn items. Swaps in values re-encoded with the current codec, each only if
-- it is still unchanged. Returns the change in bytes.
expect_types({'hash', 'list'})
number_field(redis.call('HGET', KEYS[1], F.bytes), F.bytes)
local n, delta = tonumber(ARGV[1]), 0
for i = 2, 1 + 3 * n, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    delta = delta + #ARGV[i + 2] - #ARGV[i + 1]
  end
end
for i = 2 + 3 * n, #ARGV, 2 do
  local at = redis.call('LPOS', KEYS[2], ARGV[i], 'RANK', -1)
  if at then
    redis.call('LSET', KEYS[2], at, ARGV[i + 1])
    delta = delta + #ARGV[i + 1] - #ARGV[i]
  end
end
if delta ~= 0 then redis.call('HINCRBY', KEYS[1], F.bytes, delta) end
return delta
