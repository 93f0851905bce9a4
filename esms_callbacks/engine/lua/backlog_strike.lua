-- Count a failed request against each RefId ARGV[2] still holds (see Backlog.strike): its
-- strikes (failed requests since eSMS last answered for it) and, for a request that carried
-- one RefId alone while eSMS answered the account's others (ARGV[4] '1'), the evidence
-- against it: lone failures counted (record field 9) and when the first was (ms, field 10).
-- An answer for the RefId forgets all three (backlog_settle.lua).
-- ARGV[1] the OA's prefix P, ARGV[2] token, ARGV[3] now (ms), ARGV[4] '1' to count the
-- failure as evidence against the RefIds (one), ARGV[5..] RefIds. Returns per RefId a
-- triple: strikes, lone failures, first lone failure (ms) or '' (0, 0, '' when no longer
-- held).
local p, token, now, lone = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local out = {}
for i = 5, #ARGV do
  local id = held(p, ARGV[i], token)
  if id then
    local f = fields(redis.call('HGET', chunk(p, id), ARGV[i]))
    f[3] = tostring((tonumber(f[3]) or 0) + 1)
    if lone then
      f[9] = tostring((tonumber(f[9]) or 0) + 1)
      if (f[10] or '') == '' then f[10] = now end
    end
    redis.call('HSET', chunk(p, id), ARGV[i], table.concat(f, '|'))
    out[#out + 1] = tonumber(f[3])
    out[#out + 1] = tonumber(f[9]) or 0
    out[#out + 1] = f[10] or ''
  else
    out[#out + 1] = 0
    out[#out + 1] = 0
    out[#out + 1] = ''
  end
end
return out
