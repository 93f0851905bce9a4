-- Extend the leases ARGV[2] still holds and record the terminal states about to be
-- published for them (as backlog_decide does), in one round trip.
-- ARGV[1] the OA's prefix P, ARGV[2] token, ARGV[3] new lease expiry (ms), ARGV[4] n RefIds,
-- then n RefIds, then pairs RefId, terminal state key. Returns the RefIds it lost (taken
-- back by another holder), usually none, so the answer stays small.
local p, token, n = ARGV[1], ARGV[2], tonumber(ARGV[4])
local lost, extended = {}, {}
for i = 5, 4 + n do
  local id = held(p, ARGV[i], token)
  if id == nil then
    lost[#lost + 1] = ARGV[i]
  elseif not extended[id] then
    redis.call('ZADD', p .. 'leased', 'XX', ARGV[3], id)
    extended[id] = true
  end
end
for i = 5 + n, #ARGV, 2 do
  local id = held(p, ARGV[i], token)
  if id then set_state(p, id, ARGV[i], ARGV[i + 1]) end
end
return lost
