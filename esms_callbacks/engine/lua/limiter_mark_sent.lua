-- The request committed for ARGV[1] is in the socket (RateLimiter.mark_sent): unless another
-- request was committed since, the spacing to the next one counts from its write, so the
-- time this worker took between commit and write (a busy CPU) cannot bring two requests
-- closer at eSMS. The write is dated by the earlier of ARGV[2] and now, both no earlier
-- than it.
-- KEYS[1] the rate hash (see limiter_spacing.lua).
-- ARGV[1] the send's moment (us), as commit returned it, ARGV[2] the latest the write can
-- have happened (us, on the Redis clock as the caller bounds it; 0 if it cannot tell).
-- Returns the Redis time read (us, as text).
local now = now_us()
local now_text = int_text(now)
if redis.call('HGET', KEYS[1], 'sending_us') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'sending_us')
end
if redis.call('HGET', KEYS[1], 'last_us') ~= ARGV[1] then return now_text end
local written = tonumber(ARGV[2])
if written <= 0 or written > now then written = now end
redis.call('HSET', KEYS[1], 'last_us', int_text(math.max(written, tonumber(ARGV[1]))))
return now_text
