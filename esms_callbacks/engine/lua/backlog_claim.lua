-- Lease pushed RefIds to ARGV[4] as a request would, so a push and a poll of one RefId never
-- both publish: only the holder does (push.claim).
-- KEYS[1] the account's OAs with work, KEYS[2] the account's OAs ever seen, KEYS[3] its
-- queue of OAs, KEYS[4] its backlog hash (see backlog_prelude.lua). ARGV[1] the OA's
-- prefix P, ARGV[2] now (ms), ARGV[3] lease expiry (ms), ARGV[4] token, ARGV[5] OA id,
-- ARGV[6] '1' to take RefIds never submitted, ARGV[7] done entries older than this (ms)
-- count as forgotten, ARGV[8] the account's per-OA prefix to look for a RefId to take under
-- every other OA known first ('' not to: a push names its OA; eSMS's ledger names none),
-- ARGV[9..] RefIds pushed by eSMS (or listed by its ledger).
-- Returns per RefId a quadruple: what it was, submitted (ms), last state key, due (ms). What
-- it was: 'done' (had its terminal event), 'busy' (a request holds it: try again later),
-- 'unknown' (never submitted, left alone), 'elsewhere' (known under another OA, left alone),
-- 'waiting' or 'new' (never submitted, now waiting too): both leased to the token, in one
-- chunk of the push's own.
local p, now, token, oa = ARGV[1], tonumber(ARGV[2]), ARGV[4], ARGV[5]
local cutoff, base = tonumber(ARGV[7]), ARGV[8]
-- Whether `ref` is known (waiting, or done) under an OA other than this one.
local function elsewhere(ref)
  if base == '' then return false end
  for _, other in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    local q = base .. other .. ':'
    if q ~= p and redis.call('HGET', bucket(q, ref), ref) then return true end
  end
  return false
end
local mine, added = nil, 0
local function push_chunk()
  if mine == nil then
    mine = new_chunk(p)
    redis.call('ZADD', p .. 'leased', ARGV[3], mine)
    redis.call('HSET', p .. 'owner', mine, token)
  end
  return mine
end
local out = {}
for i = 9, #ARGV do
  local ref = ARGV[i]
  local b = bucket(p, ref)
  local at = redis.call('HGET', b, ref)
  local kind, submitted, state, due = 'unknown', '', '', ''
  if at and is_done(at) and done_ms(at) >= cutoff then
    kind = 'done'
  elseif at and not is_done(at) then
    local id = at
    local lease = redis.call('ZSCORE', p .. 'leased', id)
    if lease and tonumber(lease) > now then
      kind = 'busy'
    else
      kind = 'waiting'
      due = redis.call('ZSCORE', p .. 'due', id) or ARGV[2]
      if lease then due = ARGV[2] end  -- its holder died: it was due again
      local rec = redis.call('HGET', chunk(p, id), ref)
      local f = fields(rec)
      submitted, state = f[1], f[4]
      move(p, ref, rec, id, push_chunk())
      drop_if_empty(p, id)
    end
  elseif ARGV[6] == '1' and elsewhere(ref) then
    kind = 'elsewhere'
  elseif ARGV[6] == '1' then
    kind, submitted, due = 'new', ARGV[2], ARGV[2]
    redis.call('HSET', chunk(p, push_chunk()), ref, record(ARGV[2]))
    redis.call('HSET', b, ref, mine)
    redis.call('SADD', KEYS[1], oa)
    redis.call('SADD', KEYS[2], oa)
    added = added + 1
  end
  out[#out + 1] = kind
  out[#out + 1] = submitted
  out[#out + 1] = state
  out[#out + 1] = due
end
if mine ~= nil then place_oa(KEYS[3], p, oa) end  -- only a claim that took one moves any
count_refs(KEYS[4], added)
return out
