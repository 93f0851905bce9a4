-- Prelude of the limiter's spacing scripts (engine.limiter): the spacing between two
-- requests of the account, and the rate hash's upkeep.
-- KEYS[1] the account's rate hash: `tat_us` (the next free slot), `last_us` (the last send),
-- `sending_us` (a send committed and not yet written), `strict_us` and `strict_at_us` (the
-- strictest spacing a host used, and when), `extra_us` and `extra_at_us` (the margin Code
-- 160s added, and when); all us on the Redis clock.
-- ARGV[1] interval (us), ARGV[2] base margin (us), ARGV[3] half-life of the added margin
-- (us, MARGIN_HALF_LIFE_S), ARGV[4] how long a stricter spacing holds (us,
-- STRICTEST_KEPT_S), ARGV[5] most waiters queued (MAX_WAITERS). A script with this prelude
-- takes its own ARGV from ARGV[6] on.
--
-- spacing(now): interval + base margin, or the strictest any host used within ARGV[4] (so
-- hosts with different settings during a rolling change cannot break the limit), + the
-- added margin as it decayed since. Computed, never stored as such.

local rate_key = KEYS[1]
local interval_us, base_margin_us = tonumber(ARGV[1]), tonumber(ARGV[2])
local half_life_us, strict_kept_us = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_waiters = tonumber(ARGV[5])

local function extra_margin(now)
  local extra = tonumber(redis.call('HGET', rate_key, 'extra_us') or '0')
  if extra <= 0 then return 0 end
  local since = now - tonumber(redis.call('HGET', rate_key, 'extra_at_us') or '0')
  return extra * math.pow(0.5, math.max(0, since) / half_life_us)
end

local function strictest(now)
  local mine = interval_us + base_margin_us
  local strict = tonumber(redis.call('HGET', rate_key, 'strict_us') or '0')
  local strict_at = tonumber(redis.call('HGET', rate_key, 'strict_at_us') or '0')
  if mine >= strict or now - strict_at > strict_kept_us then
    redis.call('HSET', rate_key, 'strict_us', int_text(mine), 'strict_at_us', int_text(now))
    return mine
  end
  return strict
end

local function spacing(now)
  return strictest(now) + extra_margin(now)
end

-- State far in the future means the Redis clock went back (a failover, a stepped clock):
-- bring it to now rather than make every drainer sleep for the size of the jump. Waiters
-- queue at most ARGV[5] spacings ahead; a recorded send is at most COMMIT_AHEAD_S (under a
-- spacing) ahead of now. Returns the rate hash's `tat_us` and `last_us`, repaired.
local function repaired(now, step)
  local tat = tonumber(redis.call('HGET', rate_key, 'tat_us') or '0')
  local last = tonumber(redis.call('HGET', rate_key, 'last_us') or '0')
  if tat > now + max_waiters * step + 1000000 then
    tat = now
    redis.call('HSET', rate_key, 'tat_us', int_text(tat))
  end
  if last > now + step then
    last = now
    redis.call('HSET', rate_key, 'last_us', int_text(last))
  end
  return tat, last
end

-- Keep the rate hash long enough for the added margin to fade before it is forgotten (four
-- half-lives, ms), and for ten spacings of `spacing_us`.
local function keep(spacing_us)
  redis.call('PEXPIRE', rate_key, math.max(math.floor(half_life_us / 250),
    math.ceil(spacing_us / 1000) * 10))
end
