-- Record one push in the inbox (PushRecorder.record): the source's rate (the GCRA of
-- gcra.lua, registered with it), the inbox's size, then the entry itself.
-- KEYS[1] the inbox stream, KEYS[2] the source's rate key (its tat, us), KEYS[3] stats.
-- ARGV[1] us between pushes of one source (0: no limit), ARGV[2] burst (us ahead the source
-- may run), ARGV[3] most us a push may wait for its turn, ARGV[4] most entries the inbox may
-- hold, ARGV[5] the push (JSON), ARGV[6] '1' if the push already waited for its reserved turn.
-- Returns {1, received (ms, Redis clock)} when recorded; {2, ms to wait} when the source is
-- over its rate but its turn comes within the wait allowed (the turn is reserved: record it
-- then, with ARGV[6] '1'); {0, ms} when even that is too far; {-1, 0} when the inbox is full.
-- Counts refusals in the stats hash.
local now = now_us()
local step, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
if step > 0 and ARGV[6] ~= '1' then
  local tat, wait = gcra(tonumber(redis.call('GET', KEYS[2]) or 0), now, step, burst)
  if wait > tonumber(ARGV[3]) then
    redis.call('HINCRBY', KEYS[3], 'pushes:rate_limited', 1)
    return {0, math.ceil(wait / 1000)}
  end
  redis.call('SET', KEYS[2], tat, 'PX', math.ceil((tat - now) / 1000) + 1)
  if wait > 0 then return {2, math.ceil(wait / 1000)} end
end
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[3], 'pushes:inbox_full', 1)
  return {-1, 0}
end
local received_ms = math.floor(now / 1000)
redis.call('XADD', KEYS[1], '*', 'push', ARGV[5], 'received_ms', received_ms)
redis.call('HINCRBY', KEYS[3], 'pushes:accepted', 1)
return {1, received_ms}
