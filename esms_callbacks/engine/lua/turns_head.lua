-- The accounts waiting for a turn, in the order they began waiting, once those whose wait was
-- not renewed since ARGV[1] are dropped (engine.waiting.WaitingList.in_order): an entry that
-- nobody renews (an account removed or renamed, a deployment stopped) does not stay.
-- KEYS[1] waiting, KEYS[2] renewed (as in turns_join.lua).
-- ARGV[1] a wait renewed before this (ms) is stale, ARGV[2] the first place to return
-- (0-based), ARGV[3] how many at most, ARGV[4] how many stale entries to drop at most.
-- Returns the names.
local stale = redis.call(
  'ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
for _, name in ipairs(stale) do
  redis.call('ZREM', KEYS[1], name)
  redis.call('ZREM', KEYS[2], name)
end
local first = tonumber(ARGV[2])
return redis.call('ZRANGE', KEYS[1], first, first + tonumber(ARGV[3]) - 1)
