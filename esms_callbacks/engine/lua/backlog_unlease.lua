-- Hand RefIds ARGV[3] still holds back to wait, due at ARGV[4] (ms), unchanged (e.g. after a
-- failed request). KEYS[1] the account's queue of OAs (see backlog_prelude.lua). ARGV[1]
-- the OA's prefix P, ARGV[2] OA id, ARGV[3] token, ARGV[4] due (ms), ARGV[5..] RefIds. A
-- whole leased chunk waits as it is; part of one moves to a chunk of its own. Returns 1.
local p, oa, token, due = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local by_chunk, order = {}, {}
for i = 5, #ARGV do
  local id = held(p, ARGV[i], token)
  if id then
    if not by_chunk[id] then by_chunk[id], order[#order + 1] = {}, id end
    table.insert(by_chunk[id], ARGV[i])
  end
end
local target = nil
for _, id in ipairs(order) do
  local refs = by_chunk[id]
  if #refs == redis.call('HLEN', chunk(p, id)) then
    release(p, id, due)
  else
    if target == nil then
      target = new_chunk(p)
      redis.call('ZADD', p .. 'due', due, target)
    end
    for _, ref in ipairs(refs) do
      move(p, ref, redis.call('HGET', chunk(p, id), ref), id, target)
    end
  end
end
if #order > 0 then place_oa(KEYS[1], p, oa) end
return 1
