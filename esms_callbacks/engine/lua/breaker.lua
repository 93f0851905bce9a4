-- Prelude: the account's circuit breaker (engine.health), its whole state machine in one
-- place. No KEYS, no ARGV: callers pass the health hash `key` (theirs in KEYS) and values in
-- us. Fields of the hash (Redis clock, us): `failures` (the streak), `open_until_us`,
-- `probe_until_us`.
--
-- closed -> open: breaker_failure (breaker_failure.lua, Breaker.record_failure).
-- open -> half-open -> one probe: breaker_gate and breaker_probe (limiter_commit.lua).
-- -> closed: the hash deleted on an answered request, by backlog_settle.lua (its last
-- ARGV) or Breaker.record_success.

-- Count one failure at `now`: from `trip_after` in a row, open for `base_us` doubling per
-- further failure up to `max_us`; open at least `hold_us` whatever the streak (0: only by
-- the streak). Never shortens an opening. Returns the streak and the wait before a request
-- may go (us, 0 while the breaker stays closed).
local function breaker_failure(key, now, trip_after, base_us, max_us, hold_us)
  local failures = redis.call('HINCRBY', key, 'failures', 1)
  local wait = hold_us
  if failures >= trip_after then
    wait = math.max(wait, math.min(max_us, base_us * math.pow(2, failures - trip_after)))
  end
  if wait > 0 then
    local until_before = tonumber(redis.call('HGET', key, 'open_until_us') or '0')
    local open_until = math.max(now + wait, until_before)
    wait = open_until - now
    redis.call('HSET', key, 'open_until_us', int_text(open_until), 'probe_until_us', '0')
  end
  redis.call('PEXPIRE', key, math.ceil(max_us / 1000) * 10)
  return failures, wait
end

-- May a request go at `now`? Returns the streak, the wait (us; > 0: back off that long, the
-- breaker is open or a probe is under way) and whether the breaker is half-open (the request
-- let through is its probe: breaker_probe it). State further ahead than `max_backoff_us` or
-- `probe_timeout_us` means the Redis clock went back: it is not waited for.
local function breaker_gate(key, now, probe_timeout_us, max_backoff_us)
  local health = redis.call('HMGET', key, 'failures', 'open_until_us', 'probe_until_us')
  local failures = tonumber(health[1] or '0')
  local open_until = tonumber(health[2] or '0')
  local probe_until = tonumber(health[3] or '0')
  if open_until > now + max_backoff_us then open_until = now end
  if probe_until > now + probe_timeout_us then probe_until = now end
  if now < open_until then return failures, open_until - now, false end
  local probing = open_until > 0  -- opened and not closed since: half-open
  if probing and now < probe_until then return failures, probe_until - now, true end
  return failures, 0, probing
end

-- The probe goes at `at`: no other request until it reports or `probe_timeout_us` passed.
local function breaker_probe(key, at, probe_timeout_us)
  redis.call('HSET', key, 'probe_until_us', int_text(at + probe_timeout_us))
end
