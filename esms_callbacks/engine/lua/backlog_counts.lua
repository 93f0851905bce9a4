-- How many RefIds of one OA wait, are due, are leased (read only).
-- ARGV[1] the OA's prefix P, ARGV[2] now (ms). Returns {waiting, due now, leased, leased
-- but expired (due again), oldest due (ms) or ''}.
local p, now = ARGV[1], tonumber(ARGV[2])
local waiting, due_now, leased, expired, oldest = 0, 0, 0, 0, ''
local due = redis.call('ZRANGE', p .. 'due', 0, -1, 'WITHSCORES')
for j = 1, #due, 2 do
  local n = redis.call('HLEN', chunk(p, due[j]))
  waiting = waiting + n
  if tonumber(due[j + 1]) <= now then due_now = due_now + n end
end
if due[2] then oldest = due[2] end
local held = redis.call('ZRANGE', p .. 'leased', 0, -1, 'WITHSCORES')
for j = 1, #held, 2 do
  local n = redis.call('HLEN', chunk(p, held[j]))
  if tonumber(held[j + 1]) <= now then expired = expired + n else leased = leased + n end
end
return {waiting, due_now, leased, expired, oldest}
