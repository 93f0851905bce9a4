-- Prelude of the backlog scripts (esms_callbacks/engine/backlog.py): where a RefId is, and its record.
--
-- Per OA, under the prefix P (`<account prefix>:oa:<OA id>:`), all of one hash tag:
--   P..'due'          zset  chunk id -> when its RefIds are due (ms)
--   P..'leased'       zset  chunk id -> when the lease of the request holding it ends (ms)
--   P..'owner'        hash  chunk id -> token of the request (or push) holding it
--   P..'c:'..id       hash  RefId -> record of a waiting or leased RefId (a chunk: RefIds
--                           that are due, or leased, together; at most a request's worth)
--   P..'b:'..hhhh     hash  RefId -> its chunk id while it waits or is leased, or
--                           'd|'..done s..'|'..asks..'|'..summary once it had its terminal
--                           event (hhhh: 15 bits of the RefId's SHA-1, in hex)
--   P..'forget'       zset  bucket -> the oldest done entry in it (ms), for the sweeper
--   P..'notes'        hash  RefId -> what the next ask needs (engine/notes.py), written by
--                           the sources, dropped when the RefId is done
--   P..'meta'         hash  `seq` (last chunk id), `open` (the chunk parking adds to);
--                           gone with the OA once nothing of it is left (backlog_sweep.lua)
-- Per account (KEYS of the scripts that use them, in the same hash tag):
--   queue             zset  OA id -> the earliest due time of its chunks, or lease expiry
--                           of its leased ones (ms), for every OA with RefIds waiting or
--                           leased (`place_oa`): its head is the OA due longest
--   meta              hash  `layout` (LAYOUT once the queue and `refs` were built),
--                           `refs` (RefIds waiting or leased, every OA)
-- Chunks and buckets hold few entries each, so Redis keeps them as listpacks: about 50
-- bytes a RefId where a sorted set or a large hash costs over 100.
--
-- A record is `submitted ms|asks|strikes|state|summary[|lone failures|first lone ms]`,
-- where state is the last state recorded (published, or decided before its event goes out),
-- summary the last event published: `state|observed s|source|error code`
-- (events.publish.event_summary), and the last two, only for a RefId eSMS failed alone
-- while it answered others, the evidence against it (backlog_strike.lua). A RefId never
-- asked keeps only its submission time, a number (Redis stores it in a few bytes).

local BUCKETS = 32768  -- a million RefIds are about 30 a bucket
local LAYOUT = '2'  -- the backlog with its queue of OAs and its count of RefIds

local function bucket(p, ref)
  return p .. 'b:' .. string.format('%04x', tonumber(string.sub(redis.sha1hex(ref), 1, 4), 16) % BUCKETS)
end

local function chunk(p, id)
  return p .. 'c:' .. id
end

local function fields(text)
  if not string.find(text, '|', 1, true) then return {text, '0', '0', '', '', '', '', ''} end
  local out = {}
  for field in string.gmatch(text .. '|', '([^|]*)|') do out[#out + 1] = field end
  for k = #out + 1, 8 do out[k] = '' end
  return out
end

local function record(submitted_ms)
  return submitted_ms
end

local function is_done(at)
  return string.sub(at, 1, 2) == 'd|'
end

-- When a done entry was done (ms).
local function done_ms(at)
  return tonumber(fields(at)[2]) * 1000
end

local function new_chunk(p)
  return tostring(redis.call('HINCRBY', p .. 'meta', 'seq', 1))
end

-- The chunk holding `ref` for `token`, or nil when `token` does not hold it.
local function held(p, ref, token)
  local at = redis.call('HGET', bucket(p, ref), ref)
  if not at or is_done(at) then return nil end
  if redis.call('HGET', p .. 'owner', at) == token then return at end
  return nil
end

-- Record `state` as the last state of `ref`, held in chunk `id`.
local function set_state(p, id, ref, state)
  local f = fields(redis.call('HGET', chunk(p, id), ref))
  f[4] = state
  redis.call('HSET', chunk(p, id), ref, table.concat(f, '|'))
end

-- Put `ref` (record `rec`) from chunk `from` into chunk `to`.
local function move(p, ref, rec, from, to)
  redis.call('HDEL', chunk(p, from), ref)
  redis.call('HSET', chunk(p, to), ref, rec)
  redis.call('HSET', bucket(p, ref), ref, to)
end

-- A chunk no longer leased: due again at `due` (ms).
local function release(p, id, due)
  redis.call('ZREM', p .. 'leased', id)
  redis.call('HDEL', p .. 'owner', id)
  redis.call('ZADD', p .. 'due', due, id)
end

-- Forget a chunk that has no RefId left (Redis removed its empty hash).
local function drop_if_empty(p, id)
  if redis.call('EXISTS', chunk(p, id)) == 0 then
    redis.call('ZREM', p .. 'due', id)
    redis.call('ZREM', p .. 'leased', id)
    redis.call('HDEL', p .. 'owner', id)
  end
end

-- Remember `ref` as done at `now` (ms) with its asks and summary.
local function remember_done(p, ref, now, asks, summary)
  local b = bucket(p, ref)
  redis.call('HSET', b, ref, 'd|' .. math.floor(tonumber(now) / 1000) .. '|' .. asks .. '|' .. summary)
  redis.call('ZADD', p .. 'forget', 'NX', now, string.sub(b, #p + 3))
end

-- The OA has no RefId waiting or leased: it leaves the account's set of OAs with work.
local function maybe_idle(p, oas, oa)
  if redis.call('ZCARD', p .. 'due') + redis.call('ZCARD', p .. 'leased') == 0 then
    redis.call('SREM', oas, oa)
  end
end

-- Put the OA (prefix `p`) where it belongs in the account's `queue`: scored by the earliest
-- of its chunks' due times and its leases' expiries, so that an expired lease counts as due
-- since it expired; out of it when it has neither. Every script that changes an OA's `due`
-- or `leased` calls it once it is done with them, so the queue is always exact and finding
-- the OA due longest costs one ZRANGEBYSCORE however many OAs wait.
local function place_oa(queue, p, oa)
  local due = redis.call('ZRANGE', p .. 'due', 0, 0, 'WITHSCORES')
  local held = redis.call('ZRANGE', p .. 'leased', 0, 0, 'WITHSCORES')
  local at = due[2]
  if held[2] and (at == nil or tonumber(held[2]) < tonumber(at)) then at = held[2] end
  if at then
    redis.call('ZADD', queue, at, oa)
  else
    redis.call('ZREM', queue, oa)
  end
end

-- RefIds came (`delta` > 0) or left (< 0) the account's backlog (`meta`).
local function count_refs(meta, delta)
  if delta ~= 0 then redis.call('HINCRBY', meta, 'refs', delta) end
end

-- A backlog parked by a version without the queue of OAs (no `layout` in `meta`): build the
-- queue and the count of RefIds from the OAs with work (`oas`, per-OA prefix `base`), once.
-- What scripts wrote to either before is rebuilt here, so they need not check. Returns true
-- when it built them.
local function ensure_layout(oas, queue, meta, base)
  if redis.call('HGET', meta, 'layout') == LAYOUT then return false end
  redis.call('DEL', queue)
  local refs, batch = 0, {}
  for _, oa in ipairs(redis.call('SMEMBERS', oas)) do
    local p, at = base .. oa .. ':', nil
    for _, zset in ipairs({'due', 'leased'}) do
      local scored = redis.call('ZRANGE', p .. zset, 0, -1, 'WITHSCORES')
      if scored[2] and (at == nil or tonumber(scored[2]) < tonumber(at)) then at = scored[2] end
      for j = 1, #scored, 2 do refs = refs + redis.call('HLEN', chunk(p, scored[j])) end
    end
    if at then  -- as place_oa would put it, a few hundred OAs a ZADD
      batch[#batch + 1], batch[#batch + 2] = at, oa
      if #batch >= 1000 then
        redis.call('ZADD', queue, unpack(batch))
        batch = {}
      end
    end
  end
  if #batch > 0 then redis.call('ZADD', queue, unpack(batch)) end
  redis.call('HSET', meta, 'refs', refs, 'layout', LAYOUT)
  return true
end
