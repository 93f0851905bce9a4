-- Lease up to ARGV[4] RefIds of the OA due longest, for one request held by ARGV[5].
-- KEYS[1] the account's OAs with work, KEYS[2] its queue of OAs, KEYS[3] its backlog hash
-- (see backlog_prelude.lua). ARGV[1] the account's per-OA prefix (P is it, the OA id and
-- ':'), ARGV[2] now (ms), ARGV[3] lease expiry (ms), ARGV[4] most RefIds, ARGV[5] token.
-- The OA whose chunk has been due longest goes first (an expired lease counts as due since
-- it expired; equal times: the lower OA id): the head of the queue, one look whatever the
-- number of OAs; its expired leases are due again now (their holder lost them). RefIds are
-- taken oldest due first; a RefId that failed two requests or more (its strikes) rides
-- in a batch of at most ARGV[4] / 2^(strikes - 1), so one RefId eSMS chokes on is split from
-- its neighbours within a few requests. A request is filled with its OA's RefIds due now,
-- except RefIds asked before that became due after another OA's oldest: none is asked again
-- while another waits longer for its turn (RefIds never asked still fill it, so small
-- submissions merge into full requests). The batch is one chunk, leased to the token. A
-- backlog parked before the queue existed gets it first (ensure_layout, once).
-- Returns {} when nothing is due, else: OA id, then RefId, submitted (ms), state, strikes
-- per RefId.
local queue = KEYS[2]
local base, now, most_of_all = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
ensure_layout(KEYS[1], queue, KEYS[3], base)
local first = redis.call('ZRANGEBYSCORE', queue, '-inf', ARGV[2], 'LIMIT', 0, 1)
if #first == 0 then return {} end
local best = first[1]
local p = base .. best .. ':'
-- When the next OA's oldest RefId became due (or +inf): re-asks due later wait behind it.
local second = redis.call('ZRANGE', queue, 1, 1, 'WITHSCORES')
local others_due = second[2] and tonumber(second[2]) or math.huge
for _, id in ipairs(redis.call('ZRANGEBYSCORE', p .. 'leased', '-inf', now)) do
  release(p, id, now)
end
-- Whether a chunk holds a RefId asked before (a re-ask, not a first ask).
local function asked_before(flat)
  for j = 2, #flat, 2 do
    if (tonumber(fields(flat[j])[2]) or 0) > 0 then return true end
  end
  return false
end

local most, taken, lease, out = most_of_all, 0, nil, {best}
while taken < most do
  local head = redis.call('ZRANGEBYSCORE', p .. 'due', '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  if #head == 0 then break end
  local id = head[1]
  local flat = redis.call('HGETALL', chunk(p, id))
  if taken > 0 and tonumber(head[2]) > others_due and asked_before(flat) then break end
  local fit = 0
  for j = 1, #flat, 2 do
    local struck = tonumber(fields(flat[j + 1])[3]) or 0
    if struck > 1 then
      most = math.min(most, math.max(1, math.floor(most_of_all / 2 ^ (struck - 1))))
    end
    if taken + fit >= most then break end
    fit = fit + 1
  end
  if fit == 0 then break end
  if lease == nil and fit * 2 == #flat then
    lease = id  -- the whole chunk: leased as it is
    redis.call('ZREM', p .. 'due', id)
  else
    lease = lease or new_chunk(p)
    for j = 1, fit * 2, 2 do move(p, flat[j], flat[j + 1], id, lease) end
    drop_if_empty(p, id)
  end
  for j = 1, fit * 2, 2 do
    local f = fields(flat[j + 1])
    out[#out + 1] = flat[j]
    out[#out + 1] = f[1]
    out[#out + 1] = f[4]
    out[#out + 1] = tonumber(f[3]) or 0
  end
  taken = taken + fit
  if fit * 2 < #flat then break end  -- the limit was reached inside this chunk
end
if lease == nil then
  place_oa(queue, p, best)
  return {}
end
redis.call('ZADD', p .. 'leased', ARGV[3], lease)
redis.call('HSET', p .. 'owner', lease, ARGV[5])
place_oa(queue, p, best)
return out
