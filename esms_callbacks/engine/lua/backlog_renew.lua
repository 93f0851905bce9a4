-- Extend the leases ARGV[3] still holds and record the terminal states about to be
-- published for them (as backlog_decide does), in one round trip.
-- KEYS[1] the account's queue of OAs (see backlog_prelude.lua). ARGV[1] the OA's prefix P,
-- ARGV[2] OA id, ARGV[3] token, ARGV[4] new lease expiry (ms), ARGV[5] n RefIds, then n
-- RefIds, then pairs RefId, terminal state key. Returns the RefIds it lost (taken back by
-- another holder), usually none, so the answer stays small.
local p, oa, token, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[5])
local lost, extended = {}, {}
for i = 6, 5 + n do
  local id = held(p, ARGV[i], token)
  if id == nil then
    lost[#lost + 1] = ARGV[i]
  elseif not extended[id] then
    redis.call('ZADD', p .. 'leased', 'XX', ARGV[4], id)
    extended[id] = true
  end
end
if next(extended) then place_oa(KEYS[1], p, oa) end
for i = 6 + n, #ARGV, 2 do
  local id = held(p, ARGV[i], token)
  if id then set_state(p, id, ARGV[i], ARGV[i + 1]) end
end
return lost
