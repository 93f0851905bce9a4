-- Count a failed request against each RefId ARGV[2] still holds (see Backlog.strike).
-- ARGV[1] the OA's prefix P, ARGV[2] token, ARGV[3..] RefIds. Returns the new counts, 0 for
-- a RefId no longer held.
local p, token, out = ARGV[1], ARGV[2], {}
for i = 3, #ARGV do
  local id = held(p, ARGV[i], token)
  if id then
    local f = fields(redis.call('HGET', chunk(p, id), ARGV[i]))
    f[3] = tostring((tonumber(f[3]) or 0) + 1)
    redis.call('HSET', chunk(p, id), ARGV[i], table.concat(f, '|'))
    out[#out + 1] = tonumber(f[3])
  else
    out[#out + 1] = 0
  end
end
return out
