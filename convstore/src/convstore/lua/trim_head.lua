#!lua flags=no-writes
-- KEYS: state, turns. ARGV: pinned, keep, batch. The turns a trim would move next: at most
-- `batch` after the first `pinned`, never one of the last `keep`, with the incarnation they
-- belong to: {incarnation, {items}}; nil when there is no state.
expect_types({'hash', 'list'})
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local inc = redis.call('HGET', KEYS[1], F.inc) or ''
local first = tonumber(ARGV[1])
local stop = math.min(first + tonumber(ARGV[3]), redis.call('LLEN', KEYS[2]) - tonumber(ARGV[2]))
if stop <= first then return {inc, {}} end
return {inc, redis.call('LRANGE', KEYS[2], first, stop - 1)}
