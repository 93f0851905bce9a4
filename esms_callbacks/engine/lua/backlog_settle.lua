-- Settle the RefIds of a request (or an applied push) that ARGV[3] still holds: finished
-- ones are remembered as done, the others wait until their due time; the request's counters
-- ride along, so that a request costs one round trip to settle.
-- KEYS[1] the account's OAs with work, KEYS[2] stats, KEYS[3] recent, KEYS[4] the breaker's
-- health hash, KEYS[5] the account's queue of OAs, KEYS[6] its backlog hash (see
-- backlog_prelude.lua). ARGV[1] the OA's prefix P, ARGV[2] OA id, ARGV[3] token, ARGV[4]
-- now (ms), ARGV[5] n finished, ARGV[6] n to ask again, ARGV[7] n counters, ARGV[8] n
-- gauges, ARGV[9] '1' if these RefIds were just asked (counted in their asks; their
-- strikes and the evidence against them forgotten), then: pairs RefId, event summary for
-- finished RefIds; quadruples RefId, due (ms), state key, event summary for RefIds to ask
-- again (a summary is '' when no event was published, a state '' when it stays); pairs
-- field, increment for the stats hash; pairs field, value set in it; a member for `recent`
-- (scored now, s) and how long `recent` keeps members (s), or two empty strings; and '1' if
-- eSMS answered, which closes the breaker (deletes KEYS[4]: see breaker.lua). Returns 1.
local p, oa, token, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n_finished, n_requeue = tonumber(ARGV[5]), tonumber(ARGV[6])
local n_counters, n_gauges = tonumber(ARGV[7]), tonumber(ARGV[8])
local asked = ARGV[9] == '1'
local touched, gone = {}, 0
local function updated(f, state, summary)
  if asked then  -- eSMS answered for it: no strike or evidence against it stands
    f[2] = tostring((tonumber(f[2]) or 0) + 1)
    f[3], f[9], f[10] = '0', nil, nil
  end
  if state ~= '' then f[4] = state end
  if summary ~= '' then
    local s = fields(summary)
    for k = 1, 4 do f[4 + k] = s[k] or '' end
  end
  return f
end
local i = 10
for _ = 1, n_finished do
  local ref = ARGV[i]
  local id = held(p, ref, token)
  if id then
    local f = updated(fields(redis.call('HGET', chunk(p, id), ref)), '', ARGV[i + 1])
    redis.call('HDEL', chunk(p, id), ref)
    remember_done(p, ref, now, f[2], table.concat(f, '|', 5, 8))
    redis.call('HDEL', p .. 'notes', ref)  -- what the next ask needed: there is none
    touched[id] = true
    gone = gone + 1
  end
  i = i + 2
end
-- RefIds to ask again, grouped by due time: a group that is all of its leased chunk waits in
-- it as it is; the others move to a chunk of their own.
local groups, order = {}, {}
for _ = 1, n_requeue do
  local ref, due = ARGV[i], ARGV[i + 1]
  local id = held(p, ref, token)
  if id then
    local f = updated(fields(redis.call('HGET', chunk(p, id), ref)), ARGV[i + 2], ARGV[i + 3])
    if not groups[due] then groups[due], order[#order + 1] = {}, due end
    table.insert(groups[due], {ref, id, table.concat(f, '|')})
  end
  i = i + 4
end
for _, due in ipairs(order) do
  local group, whole = groups[due], groups[due][1][2]
  for _, item in ipairs(group) do
    if item[2] ~= whole then whole = nil break end
  end
  if whole and #group ~= redis.call('HLEN', chunk(p, whole)) then whole = nil end
  if whole then
    for _, item in ipairs(group) do redis.call('HSET', chunk(p, whole), item[1], item[3]) end
    release(p, whole, due)
  else
    local target = new_chunk(p)
    redis.call('ZADD', p .. 'due', due, target)
    for _, item in ipairs(group) do
      move(p, item[1], item[3], item[2], target)
      touched[item[2]] = true
    end
  end
end
for id in pairs(touched) do drop_if_empty(p, id) end
maybe_idle(p, KEYS[1], oa)
place_oa(KEYS[5], p, oa)
count_refs(KEYS[6], -gone)
for _ = 1, n_counters do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, n_gauges do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if ARGV[i] ~= '' then
  local now_s = tonumber(now) / 1000
  redis.call('ZADD', KEYS[3], now_s, ARGV[i])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_s - tonumber(ARGV[i + 1]))
end
if ARGV[i + 2] == '1' then redis.call('DEL', KEYS[4]) end
return 1
