-- Forget done RefIds older than ARGV[3] (ms) in up to ARGV[4] buckets of one OA, the ones
-- holding the oldest done entries first (P..'forget'). KEYS[1] the account's queue of OAs:
-- the OA's place in it is set again from its `due` and `leased` (which a sweep leaves as
-- they are), which mends it should a writer that did not keep the queue (a worker of the
-- version before, in a rolling upgrade) have changed them. ARGV[1] the OA's prefix P,
-- ARGV[2] OA id, ARGV[3] done entries older than this (ms) are forgotten, ARGV[4] most
-- buckets. Returns the entries forgotten and the oldest done entry left (ms), or '' if none.
local p, oa, cutoff, most = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
place_oa(KEYS[1], p, oa)
local forgotten = 0
for _, hhhh in ipairs(redis.call('ZRANGEBYSCORE', p .. 'forget', '-inf', cutoff, 'LIMIT', 0, most)) do
  local b = p .. 'b:' .. hhhh
  local flat = redis.call('HGETALL', b)
  local oldest = nil
  for j = 1, #flat, 2 do
    if is_done(flat[j + 1]) then
      local at_ms = done_ms(flat[j + 1])
      if at_ms < cutoff then
        redis.call('HDEL', b, flat[j])
        forgotten = forgotten + 1
      elseif oldest == nil or at_ms < oldest then
        oldest = at_ms
      end
    end
  end
  if oldest then
    redis.call('ZADD', p .. 'forget', oldest, hhhh)
  else
    redis.call('ZREM', p .. 'forget', hhhh)
  end
end
local head = redis.call('ZRANGE', p .. 'forget', 0, 0, 'WITHSCORES')
return {forgotten, head[2] or ''}
