-- Right before a send (RateLimiter.commit): check everything that may forbid it (pause,
-- window, the breaker of breaker.lua) and the spacing against the last request actually
-- sent, and record the send. Registered with limiter_spacing.lua and breaker.lua.
-- KEYS[1] the rate hash, KEYS[2] the pause flag, KEYS[3] the health hash (the breaker's).
-- ARGV[1] interval (us), ARGV[2] base margin (us), ARGV[3] half-life of the added margin
-- (us), ARGV[4] how long a stricter spacing holds (us), ARGV[5] most waiters queued: the
-- spacing's, read by limiter_spacing.lua.
-- ARGV[6], ARGV[7] window open and close (us; 0 0 = always open), ARGV[8] how long a
-- half-open probe may take before another one (us), ARGV[9] the longest backoff (us),
-- ARGV[10] how long a committed request may take to reach its socket before the next may go
-- without it (us), ARGV[11] how early a commit may be granted for its moment (us,
-- COMMIT_AHEAD_S).
-- Returns {status, value, failures, now}: {0, at} the send is recorded for `at` (now, or up
-- to ARGV[11] later when the spacing allows it only then); {1, wait} spacing still needed, or
-- the request committed before is not in its socket yet; {2, wait} the account backs off
-- (breaker open, or a probe is under way); {-1, 0} window not open; {-2, 0} account paused.
-- `failures` is the breaker's failure streak, `now` the Redis time read; all us, values and
-- now as text.
-- `sending_us` marks a request committed and not yet written: the next waits for its write
-- (limiter_mark_sent.lua), so a worker stalled between commit and write cannot be overtaken
-- and have its request reach eSMS right after the next one.
local now = now_us()
local now_text = int_text(now)
if redis.call('EXISTS', KEYS[2]) == 1 then return {-2, 0, 0, now_text} end
local opens, closes = tonumber(ARGV[6]), tonumber(ARGV[7])
if closes > 0 and (now < opens or now >= closes) then return {-1, 0, 0, now_text} end
local probe_timeout_us = tonumber(ARGV[8])
local failures, backoff_us, probing =
  breaker_gate(KEYS[3], now, probe_timeout_us, tonumber(ARGV[9]))
if backoff_us > 0 then return {2, int_text(backoff_us), failures, now_text} end
local step = spacing(now)
local ahead = math.min(tonumber(ARGV[11]), step / 4)
local _, last = repaired(now, step)
local write_timeout = tonumber(ARGV[10])
local sending = tonumber(redis.call('HGET', KEYS[1], 'sending_us') or '0')
if sending > 0 and sending <= now + ahead and now - sending < write_timeout then
  -- The next goes a spacing after that write at the soonest: sleep until then, and poll
  -- (2 ms) only once it is overdue.
  local wait = sending + step - ahead / 2 - now
  if wait < 2000 then wait = math.min(2000, sending + write_timeout - now) end
  return {1, int_text(math.max(1, wait)), failures, now_text}
end
local at = math.max(now, last + step)
if at - now > ahead then
  return {1, int_text(at - now - ahead / 2), failures, now_text}
end
if closes > 0 and at >= closes then return {-1, 0, 0, now_text} end
redis.call('HSET', KEYS[1], 'last_us', int_text(at), 'sending_us', int_text(at))
keep(step + at - now)
if probing then breaker_probe(KEYS[3], at, probe_timeout_us) end  -- one probe at a time
return {0, int_text(at), failures, now_text}
