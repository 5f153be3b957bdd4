-- Run before every script. A key of the wrong type fails the whole script before its first
-- write (BADTYPE <key index> <type>), and a state field is read as a number only if it is an
-- integer from 0 to 2^53 (BADFIELD <name>): a script applies whole or not at all.
local function expect_types(types)
  for i, want in ipairs(types) do
    local got = redis.call('TYPE', KEYS[i]).ok
    if got ~= 'none' and got ~= want then
      error({err = 'BADTYPE ' .. i .. ' ' .. got})
    end
  end
end
local function number_field(value, name)
  -- A field of a state that exists must be there (only the archived count came later); a
  -- count is decimal digits up to 2^53, which a Lua number holds exactly: a negative or huge
  -- seq would be written into turn items that no reader could split.
  if value == false then
    if name ~= F.archived and redis.call('EXISTS', KEYS[1]) == 1 then
      error({err = 'BADFIELD ' .. name})
    end
    return 0
  end
  local n = string.match(value, '^%d+$') and tonumber(value)
  if not n or n > 9007199254740992 then error({err = 'BADFIELD ' .. name}) end
  return n
end
local function add_field(fields, name, value)
  fields[#fields + 1] = name
  fields[#fields + 1] = value
end
local function has_prefix(name, prefixes)
  for _, prefix in ipairs(prefixes) do
    if string.sub(name, 1, #prefix) == prefix then return true end
  end
  return false
end
local function refresh_ttl(ttl)
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[1], ttl)
    redis.call('EXPIRE', KEYS[2], ttl)
  end
end
local function push_turns(turns, seq, payloads, from)
  -- RPUSH in slices: unpack() of a very long list overflows Lua's stack.
  local added, batch = 0, {}
  for i = from, #payloads do
    local item = string.format('%d|', seq) .. payloads[i]
    batch[#batch + 1] = item
    added = added + #item
    seq = seq + 1
    if #batch == 1000 then
      redis.call('RPUSH', turns, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('RPUSH', turns, unpack(batch)) end
  return seq, added
end
