-- The OA the next lease would take, and how many RefIds the account holds (read only): what
-- the release's check for due work and the capacity check need, in one look each however
-- many OAs wait. KEYS[1] the account's queue of OAs, KEYS[2] its backlog hash (see
-- backlog_prelude.lua). ARGV[1] now (ms).
-- Returns {1 if the queue was built (else 0: run backlog_migrate first), the OA due longest
-- or '' when none is due, RefIds waiting or leased over every OA}.
local first = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1)
local built = redis.call('HGET', KEYS[2], 'layout') == LAYOUT
return {built and 1 or 0, first[1] or '', tonumber(redis.call('HGET', KEYS[2], 'refs') or 0)}
