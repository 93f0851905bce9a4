-- Reserve the account's next free slot (RateLimiter.reserve), so each waiter sleeps exactly
-- until its own slot: the GCRA of gcra.lua on the rate hash's `tat_us`, never closer than a
-- spacing after the last send. Registered with limiter_spacing.lua and gcra.lua.
-- KEYS[1] the rate hash.
-- ARGV[1] interval (us), ARGV[2] base margin (us), ARGV[3] half-life of the added margin
-- (us), ARGV[4] how long a stricter spacing holds (us), ARGV[5] most waiters queued: the
-- spacing's, read by limiter_spacing.lua.
-- ARGV[6] latest slot start allowed (us, 0 = none).
-- Returns the wait (us) until the reserved slot, or -1 if the slot would start too late
-- (nothing is reserved then).
local now = now_us()
local step = spacing(now)
local tat, last = repaired(now, step)
local next_tat, wait = gcra(math.max(tat, last + step), now, step, 0)
local not_after = tonumber(ARGV[6])
if not_after > 0 and now + wait >= not_after then return -1 end
redis.call('HSET', KEYS[1], 'tat_us', int_text(next_tat))
keep(wait + step)
return wait
