-- Take an account off the turns' waiting list (engine.waiting.WaitingList.leave): a drain of
-- it started, or a hand-over claims it.
-- KEYS[1] waiting, KEYS[2] renewed (as in turns_join.lua).
-- ARGV[1] the account's name.
-- Returns 1 if it was waiting (of callers claiming it at once, one gets 1), else 0.
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
