-- Give back a reserved slot that was not used (RateLimiter.hand_back): the next reserver
-- may start one spacing earlier, but never closer than a spacing after the last request
-- sent. Registered with limiter_spacing.lua.
-- KEYS[1] the rate hash.
-- ARGV[1] interval (us), ARGV[2] base margin (us), ARGV[3] half-life of the added margin
-- (us), ARGV[4] how long a stricter spacing holds (us), ARGV[5] most waiters queued: the
-- spacing's, read by limiter_spacing.lua.
-- Returns 1.
local now = now_us()
local step = spacing(now)
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat_us') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_us') or '0')
if tat > 0 then
  redis.call('HSET', KEYS[1], 'tat_us', int_text(math.max(tat - step, last + step)))
end
return 1
