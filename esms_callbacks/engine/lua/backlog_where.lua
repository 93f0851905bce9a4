-- Where one RefId is (read only): ARGV[1] the OA's prefix P, ARGV[2] RefId.
-- Returns {} when unknown, {'d', its done entry} once done, or {'c', record,
-- due (ms) or '', lease expiry (ms) or ''} while it waits or is leased.
local p, ref = ARGV[1], ARGV[2]
local at = redis.call('HGET', bucket(p, ref), ref)
if not at then return {} end
if is_done(at) then return {'d', at} end
local id = at
return {
  'c',
  redis.call('HGET', chunk(p, id), ref) or '',
  redis.call('ZSCORE', p .. 'due', id) or '',
  redis.call('ZSCORE', p .. 'leased', id) or '',
}
