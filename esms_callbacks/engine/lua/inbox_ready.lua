-- Name accounts whose inboxes have new pushes (push.inbox.ReadyNamer, after their entries
-- are recorded; the appliers, for an account with more than a batch waiting): the receivers'
-- applier threads wait on this set instead of on every account's inbox.
-- KEYS[1] the deployment's ready set (keys.PUSHES_READY), ARGV[1..] the accounts' keys names.
-- Each scored by the Redis clock (ms) when first named, and left so while already there: the
-- account waiting longest is taken first, whichever host's clock is ahead.
-- Returns how many were not named already.
local now_ms = math.floor(now_us() / 1000)
local added = 0
for i = 1, #ARGV do
  added = added + redis.call('ZADD', KEYS[1], 'NX', now_ms, ARGV[i])
end
return added
