-- Name an account whose inbox has new pushes (PushRecorder, right after inbox_record.lua;
-- the appliers, for an account with more than a batch waiting): the receivers' applier
-- threads wait on this set instead of on every account's inbox.
-- KEYS[1] the deployment's ready set (keys.PUSHES_READY), ARGV[1] the account's keys name.
-- Scored by the Redis clock (ms) when first named, and left so while already there: the
-- account waiting longest is taken first, whichever host's clock is ahead.
-- Returns 1.
redis.call('ZADD', KEYS[1], 'NX', math.floor(now_us() / 1000), ARGV[1])
return 1
