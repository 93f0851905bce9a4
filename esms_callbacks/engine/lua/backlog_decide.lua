-- Record the terminal states of the RefIds ARGV[2] still holds, before their events are
-- published: if the settle never comes (a crash), whoever holds the RefId next (a request or
-- a push) finds the decision and publishes the same event again, never another one.
-- ARGV[1] the OA's prefix P, ARGV[2] token, then pairs RefId, state key. Returns 1.
local p, token = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  local id = held(p, ARGV[i], token)
  if id then set_state(p, id, ARGV[i], ARGV[i + 1]) end
end
return 1
