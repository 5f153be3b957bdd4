#!lua
-- KEYS: state. ARGV: the doc as it was read, then pairs of state field and encoded value.
-- Replaces a state stored as one doc by one field per key, if the doc is still the one read.
-- Returns the change in bytes, or false when the doc changed (or went) meanwhile. A key
-- written split (its marker among the values) marks the hash with this layout's version.
expect_types({'hash'})
if redis.call('HGET', KEYS[1], F.doc) ~= ARGV[1] then return false end
local delta, fields = -#ARGV[1], {}
for i = 2, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
  delta = delta + #ARGV[i + 1]
  if ARGV[i + 1] == SPLIT_MARKER then add_field(fields, F.layout, LAYOUT_VERSION) end
end
redis.call('HDEL', KEYS[1], F.doc)
if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
redis.call('HINCRBY', KEYS[1], F.bytes, delta)
return delta
