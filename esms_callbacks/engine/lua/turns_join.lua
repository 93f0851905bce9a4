-- Put an account on the turns' waiting list, at the back, unless it waits already; either way
-- its wait is renewed now (engine.waiting.WaitingList.join).
-- KEYS[1] waiting (name -> when it began waiting, ms), KEYS[2] renewed (name -> when its
-- wait was last renewed, ms): the same members, always changed together.
-- ARGV[1] now (ms), ARGV[2] the account's name.
-- Returns when it began waiting (ms).
local since = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not since then
  since = ARGV[1]
  redis.call('ZADD', KEYS[1], since, ARGV[2])
end
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return since
