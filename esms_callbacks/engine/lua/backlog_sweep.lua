-- Forget done RefIds older than ARGV[2] (ms) in up to ARGV[3] buckets of one OA, the ones
-- holding the oldest done entries first (P..'forget'). ARGV[1] the OA's prefix P.
-- Returns the entries forgotten and the oldest done entry left (ms), or '' if none.
local p, cutoff, most = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
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
