-- Park RefIds of one OA: each waits, due now, unless it waits already or finished recently.
-- KEYS[1] the account's OAs with work, KEYS[2] the account's OAs ever seen, KEYS[3] its
-- queue of OAs, KEYS[4] its backlog hash (see backlog_prelude.lua).
-- ARGV[1] the OA's prefix P, ARGV[2] now (ms), ARGV[3] OA id, ARGV[4] done entries older
-- than this (ms) are forgotten, ARGV[5] most RefIds a chunk holds, ARGV[6] the prefix of the
-- OA of RefIds adopted from eSMS's ledger ('' when the account adopts none), ARGV[7..] RefIds.
-- Small submissions fill the same chunk (the `open` one, while it is due and has room), so
-- they leave in full requests. A RefId the ledger's sweep adopted first is left there (one
-- RefId, one terminal event). Returns {added, already finished}.
local p, now, oa = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local cutoff, size, adopted = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local open = redis.call('HGET', p .. 'meta', 'open')
local room = 0
if open then
  local due = redis.call('ZSCORE', p .. 'due', open)
  if due and tonumber(due) <= now then room = size - redis.call('HLEN', chunk(p, open)) end
end
local added, finished = 0, 0
for i = 7, #ARGV do
  local ref = ARGV[i]
  local b = bucket(p, ref)
  local at = redis.call('HGET', b, ref)
  if not at and adopted ~= '' and adopted ~= p then
    at = redis.call('HGET', bucket(adopted, ref), ref)  -- adopted: waiting, or done, there
  end
  if at and is_done(at) and done_ms(at) >= cutoff then
    finished = finished + 1
  elseif not at or is_done(at) then  -- new, or done too long ago to remember
    if room <= 0 then
      open, room = new_chunk(p), size
      redis.call('ZADD', p .. 'due', now, open)
      redis.call('HSET', p .. 'meta', 'open', open)
    end
    redis.call('HSET', chunk(p, open), ref, record(ARGV[2]))
    redis.call('HSET', b, ref, open)
    room, added = room - 1, added + 1
  end
end
if added > 0 then
  redis.call('SADD', KEYS[1], oa)
  redis.call('SADD', KEYS[2], oa)
  place_oa(KEYS[3], p, oa)
  count_refs(KEYS[4], added)
end
return {added, finished}
