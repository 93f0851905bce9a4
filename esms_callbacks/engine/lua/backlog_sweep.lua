-- Forget done RefIds older than ARGV[3] (ms) in up to ARGV[4] buckets of one OA, the ones
-- holding the oldest done entries first (P..'forget'); then forget the OA itself once
-- nothing of it waits, is leased or is remembered as done: its `meta` and `owner` go, and
-- it leaves the account's OAs ever seen (KEYS[2]) and with work (KEYS[3]), so that an OA
-- from a producer's bug or a forged push costs no script at every later sweep. An OA that
-- gets RefIds again is simply known again (backlog_park.lua, backlog_claim.lua): its chunk
-- ids start over, which no old holder can mistake, since a lease is its token's.
-- KEYS[1] the account's queue of OAs: the OA's place in it is set again from its `due` and
-- `leased` (which a sweep leaves as they are), which mends it should a writer that did not
-- keep the queue (a worker of the version before, in a rolling upgrade) have changed them.
-- KEYS[2] the account's OAs ever seen, KEYS[3] its OAs with work (see backlog_prelude.lua).
-- ARGV[1] the OA's prefix P, ARGV[2] OA id, ARGV[3] done entries older than this (ms) are
-- forgotten, ARGV[4] most buckets. Returns the entries forgotten, the oldest done entry left
-- (ms) or '' if none, and 1 if the OA was forgotten (else 0).
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
local gone = 0
if head[2] == nil and redis.call('ZCARD', p .. 'due') + redis.call('ZCARD', p .. 'leased') == 0 then
  redis.call('DEL', p .. 'meta', p .. 'owner', p .. 'notes')
  redis.call('SREM', KEYS[2], oa)
  redis.call('SREM', KEYS[3], oa)
  gone = 1
end
return {forgotten, head[2] or '', gone}
