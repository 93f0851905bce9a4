-- eSMS saw two requests too close (Code 160): widen the margin (RateLimiter.widen_margin),
-- doubling what was added, plus one step. Registered with limiter_spacing.lua.
-- KEYS[1] the rate hash.
-- ARGV[1] interval (us), ARGV[2] base margin (us), ARGV[3] half-life of the added margin
-- (us), ARGV[4] how long a stricter spacing holds (us), ARGV[5] most waiters queued: the
-- spacing's, read by limiter_spacing.lua.
-- ARGV[6] most extra margin (us), ARGV[7] the step a 160 adds at least (us, MARGIN_STEP_S).
-- Returns the new extra margin (us, as text).
local now = now_us()
local extra = math.min(tonumber(ARGV[6]), extra_margin(now) * 2 + tonumber(ARGV[7]))
redis.call('HSET', KEYS[1], 'extra_us', int_text(extra), 'extra_at_us', int_text(now))
keep(spacing(now))
return int_text(extra)
