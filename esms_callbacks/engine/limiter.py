"""The account's gate: requests of one account spaced at least the interval apart, and none
while the account is paused, backing off, or outside the window.

Three steps, all atomic Lua on the Redis server's clock:
- reserve: claim the next free slot (GCRA-style theoretical arrival time), so each waiter
  sleeps exactly until its own slot instead of polling Redis;
- hand_back: a waiter that found nothing to send gives its slot back to the next reserver;
- commit: right before sending, check everything that may forbid the send (pause, breaker,
  window) and the spacing against the last request actually sent (a waiter that overslept
  must not squeeze the next one), and record the send. Nothing but commit decides that a
  request may go, so a slot reserved before eSMS refused the account is never used. A commit
  made up to COMMIT_AHEAD_S before the spacing allows is granted for that moment, and the
  caller waits it out on its own monotonic clock: the send then leaves at the moment itself,
  not a sleep's wake-up and a Redis round trip after it;
- mark_sent: once the request is in the socket, move the recorded send to that moment.

Spacing = interval + margin. The margin absorbs the jitter between our commit and eSMS's
receipt: a small base (ESMS_RATE_MARGIN) plus an extra part that each Code 160 raises and
that halves every MARGIN_HALF_LIFE_S, so a network that really jitters pays for it and a
quiet one does not.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis

from esms_callbacks.engine.redis_time import RedisTimeBounds
from esms_callbacks.engine.scripts import register

MARGIN_HALF_LIFE_S = 300.0  # how fast the margin a 160 added fades again
MARGIN_STEP_S = 0.002  # a 160 adds at least this to the margin (doubling what it adds)
STRICTEST_KEPT_S = 300.0  # a stricter interval another host used holds this long after it
MAX_WAITERS = 100  # drainers that can queue for slots (ESMS_DRAINERS is at most 100)
# A committed request normally reaches its socket within milliseconds; one that has not after
# this long (its write failed, its worker died) no longer holds the next one back.
WRITE_TIMEOUT_S = 0.25
# A commit this close to the moment the spacing allows is granted for that moment (at most a
# quarter of the spacing), and waiters are told to come back half of it early: room for the
# waiter's wake-up (~0.1 ms median here, p99 0.2-0.7 ms) and the commit's round trip (at 20
# requests/s on the loaded 2-core machine: median 1.4-2.2 ms, p90 4.7-6.8 ms). The caller
# sleeps all but the last SPIN_S of the wait (1 ms spun per request); pause, breaker and
# window are checked at most this long before the send.
COMMIT_AHEAD_S = 0.012

# Computes the spacing (us) now: interval + base margin, the strictest any host used within
# STRICTEST_KEPT_S (so hosts with different settings during a rolling change cannot break the
# limit), + the decayed extra margin.
# Expects `now` and KEYS[1] (the rate hash); ARGV[1] interval (us), ARGV[2] base margin (us).
_SPACING_LUA = f"""
local function extra_margin(now)
  local extra = tonumber(redis.call('HGET', KEYS[1], 'extra_us') or '0')
  if extra <= 0 then return 0 end
  local since = now - tonumber(redis.call('HGET', KEYS[1], 'extra_at_us') or '0')
  return extra * math.pow(0.5, math.max(0, since) / {int(MARGIN_HALF_LIFE_S * 1e6)})
end
local function strictest(now)
  local mine = tonumber(ARGV[1]) + tonumber(ARGV[2])
  local strict = tonumber(redis.call('HGET', KEYS[1], 'strict_us') or '0')
  local strict_at = tonumber(redis.call('HGET', KEYS[1], 'strict_at_us') or '0')
  if mine >= strict or now - strict_at > {int(STRICTEST_KEPT_S * 1e6)} then
    redis.call('HSET', KEYS[1], 'strict_us', string.format('%.0f', mine),
      'strict_at_us', string.format('%.0f', now))
    return mine
  end
  return strict
end
local function spacing(now)
  return strictest(now) + extra_margin(now)
end
-- State far in the future means the Redis clock went back (a failover, a stepped clock):
-- bring it to now rather than make every drainer sleep for the size of the jump. Waiters
-- queue at most MAX_WAITERS spacings ahead; a recorded send is at most COMMIT_AHEAD_S
-- (under a spacing) ahead of now.
local function repaired(now, step)
  local tat = tonumber(redis.call('HGET', KEYS[1], 'tat_us') or '0')
  local last = tonumber(redis.call('HGET', KEYS[1], 'last_us') or '0')
  if tat > now + {MAX_WAITERS} * step + 1000000 then
    tat = now
    redis.call('HSET', KEYS[1], 'tat_us', string.format('%.0f', tat))
  end
  if last > now + step then
    last = now
    redis.call('HSET', KEYS[1], 'last_us', string.format('%.0f', last))
  end
  return tat, last
end
local function keep(spacing_us)
  -- kept long enough for the margin to fade before it is forgotten
  redis.call('PEXPIRE', KEYS[1], math.max({int(MARGIN_HALF_LIFE_S * 4000)},
    math.ceil(spacing_us / 1000) * 10))
end
"""

# KEYS[1]: rate hash. ARGV[1], ARGV[2]: see _SPACING_LUA. ARGV[3]: latest slot start allowed
# (us, 0 = none). Returns the wait (us) until the reserved slot, or -1 if the slot would start
# too late (nothing is reserved then).
RESERVE_LUA = (
    _SPACING_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local step = spacing(now)
local tat, last = repaired(now, step)
local slot = math.max(tat, now, last + step)
local not_after = tonumber(ARGV[3])
if not_after > 0 and slot >= not_after then return -1 end
redis.call('HSET', KEYS[1], 'tat_us', string.format('%.0f', slot + step))
keep(slot - now + step)
return slot - now
"""
)

# KEYS[1]: rate hash. ARGV[1], ARGV[2]: see _SPACING_LUA. The next reserver may start one
# spacing earlier, but never closer than a spacing after the last request sent.
HAND_BACK_LUA = (
    _SPACING_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local step = spacing(now)
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat_us') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_us') or '0')
if tat > 0 then
  redis.call('HSET', KEYS[1], 'tat_us', string.format('%.0f', math.max(tat - step, last + step)))
end
return 1
"""
)

# KEYS[1]: rate hash, KEYS[2]: paused, KEYS[3]: health hash (see engine.health).
# ARGV[1], ARGV[2]: see _SPACING_LUA. ARGV[3], ARGV[4]: window open and close (us; 0 0 =
# always open). ARGV[5]: how long a half-open probe may take before another one (us).
# ARGV[6]: the longest backoff (us). ARGV[7]: how long a committed request may take to reach
# its socket before the next may go without it (us). ARGV[8]: COMMIT_AHEAD_S (us).
# Returns {status, value, failures, now}: {0, at} the send is recorded for `at` (now, or up
# to COMMIT_AHEAD_S later when the spacing allows it only then); {1, wait} spacing still
# needed, or the request committed before is not in its socket yet; {2, wait} the account
# backs off (breaker open, or a probe is under way); {-1, 0} window not open; {-2, 0} account
# paused. `failures` is the breaker's failure streak, `now` the Redis time read (us).
# `sending_us` marks a request committed and not yet written: the next waits for its write
# (MARK_SENT_LUA), so a worker stalled between commit and write cannot be overtaken and
# have its request reach eSMS right after the next one.
COMMIT_LUA = (
    _SPACING_LUA
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_text = string.format('%.0f', now)
if redis.call('EXISTS', KEYS[2]) == 1 then return {-2, 0, 0, now_text} end
local opens, closes = tonumber(ARGV[3]), tonumber(ARGV[4])
if closes > 0 and (now < opens or now >= closes) then return {-1, 0, 0, now_text} end
local health = redis.call('HMGET', KEYS[3], 'failures', 'open_until_us', 'probe_until_us')
local failures = tonumber(health[1] or '0')
local open_until = tonumber(health[2] or '0')
local probe_until = tonumber(health[3] or '0')
-- Further ahead than any backoff or probe can be: the Redis clock went back. Wait no more.
if open_until > now + tonumber(ARGV[6]) then open_until = now end
if probe_until > now + tonumber(ARGV[5]) then probe_until = now end
if now < open_until then
  return {2, string.format('%.0f', open_until - now), failures, now_text}
end
local probing = open_until > 0  -- the breaker has opened and not closed since: half-open
if probing and now < probe_until then
  return {2, string.format('%.0f', probe_until - now), failures, now_text}
end
local step = spacing(now)
local ahead = math.min(tonumber(ARGV[8]), step / 4)
local _, last = repaired(now, step)
local write_timeout = tonumber(ARGV[7])
local sending = tonumber(redis.call('HGET', KEYS[1], 'sending_us') or '0')
if sending > 0 and sending <= now + ahead and now - sending < write_timeout then
  -- The next goes a spacing after that write at the soonest: sleep until then, and poll
  -- (2 ms) only once it is overdue.
  local wait = sending + step - ahead / 2 - now
  if wait < 2000 then wait = math.min(2000, sending + write_timeout - now) end
  return {1, string.format('%.0f', math.max(1, wait)), failures, now_text}
end
local at = math.max(now, last + step)
if at - now > ahead then
  return {1, string.format('%.0f', at - now - ahead / 2), failures, now_text}
end
if closes > 0 and at >= closes then return {-1, 0, 0, now_text} end
redis.call('HSET', KEYS[1], 'last_us', string.format('%.0f', at),
  'sending_us', string.format('%.0f', at))
keep(step + at - now)
if probing then  -- one probe at a time until a success closes the breaker
  redis.call('HSET', KEYS[3], 'probe_until_us', string.format('%.0f', at + tonumber(ARGV[5])))
end
return {0, string.format('%.0f', at), failures, now_text}
"""
)

# KEYS[1]: rate hash. ARGV[1]: the send's moment (us), as commit returned it. ARGV[2]: the
# latest the write can have happened (us, on the Redis clock as the caller bounds it; 0 if it
# cannot tell).
# The request committed then is in the socket: unless another request was committed since,
# the spacing to the next one counts from its write, so the time this worker took between
# commit and write (a busy CPU) cannot bring two requests closer at eSMS. The write is dated
# by the earlier of ARGV[2] and now, both no earlier than it. Returns the Redis time read (us).
MARK_SENT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_text = string.format('%.0f', now)
if redis.call('HGET', KEYS[1], 'sending_us') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'sending_us')
end
if redis.call('HGET', KEYS[1], 'last_us') ~= ARGV[1] then return now_text end
local written = tonumber(ARGV[2])
if written <= 0 or written > now then written = now end
redis.call('HSET', KEYS[1], 'last_us',
  string.format('%.0f', math.max(written, tonumber(ARGV[1]))))
return now_text
"""

# KEYS[1]: rate hash. ARGV[1], ARGV[2]: see _SPACING_LUA. ARGV[3]: most extra margin (us).
# eSMS saw two requests too close: widen the margin (double what was added, at least one
# step more). Returns the new extra margin (us).
WIDEN_LUA = (
    _SPACING_LUA
    + f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local extra = math.min(tonumber(ARGV[3]), extra_margin(now) * 2 + {int(MARGIN_STEP_S * 1e6)})
redis.call('HSET', KEYS[1], 'extra_us', string.format('%.0f', extra), 'extra_at_us',
  string.format('%.0f', now))
keep(spacing(now))
return string.format('%.0f', extra)
"""
)


@dataclass(frozen=True)
class Commit:
    go: bool
    # go: write the request no sooner than this from when commit returned (0, or at most
    # COMMIT_AHEAD_S). Not go (spacing or backoff): sleep this long, then commit again.
    wait_s: float = 0.0
    closed: bool = False  # the window is not open
    paused: bool = False  # eSMS refused the account
    backing_off: bool = False  # the breaker holds requests back for `wait_s`
    at_us: int = 0  # when go: the moment granted, on the Redis clock (us)
    failures: int = 0  # the breaker's current failure streak

    @property
    def at_s(self) -> float:
        return self.at_us / 1e6

    @property
    def refused(self) -> str:
        """Why this commit can never go by waiting a spacing, or '' if it can."""
        if self.closed:
            return "window closed"
        if self.paused:
            return "account paused"
        return "backing off after failures" if self.backing_off else ""


class RateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        keys: tuple[str, str, str],
        interval_s: float,
        margin_s: float,
        probe_timeout_s: float = 60.0,
        max_backoff_s: float = 3600.0,
        write_timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        """`keys`: the account's rate hash, paused flag and health hash."""
        self._redis = client
        self._write_timeout_us = int(write_timeout_s * 1e6)
        self._keys = list(keys)
        self._interval_us = int(interval_s * 1e6)
        self._margin_us = int(margin_s * 1e6)
        self._probe_timeout_us = int(probe_timeout_s * 1e6)
        self._max_backoff_us = int(max_backoff_s * 1e6)
        self._reserve = register(client, RESERVE_LUA)
        self._hand_back = register(client, HAND_BACK_LUA)
        self._commit = register(client, COMMIT_LUA)
        self._widen = register(client, WIDEN_LUA)
        self._mark_sent = register(client, MARK_SENT_LUA)
        # Where this host's clock stands against Redis's, from every commit's and mark's TIME
        self.redis_time = RedisTimeBounds()

    def reserve(self, not_after_s: float | None = None) -> float | None:
        """Reserve the next slot; return seconds to wait for it, or None if it is too late."""
        limit_us = 0 if not_after_s is None else int(not_after_s * 1e6)
        wait_us = int(self._reserve(keys=self._keys[:1], args=[*self._spacing_args, limit_us]))
        return None if wait_us < 0 else wait_us / 1e6

    def hand_back(self) -> None:
        """Give back a reserved slot that was not used, so the next reserver can take it."""
        self._hand_back(keys=self._keys[:1], args=self._spacing_args)

    def commit(self, window_s: tuple[float, float] | None = None) -> Commit:
        """Record a send if pause, breaker, window (open, close epoch s) and spacing allow it
        now or within COMMIT_AHEAD_S; when go, the caller writes once `wait_s` has passed."""
        opens_us, closes_us = (
            (0, 0) if window_s is None else (int(window_s[0] * 1e6), int(window_s[1] * 1e6))
        )
        sent_s = time.monotonic()
        status, value, failures, now_us = self._commit(
            keys=self._keys,
            args=[
                *self._spacing_args,
                opens_us,
                closes_us,
                self._probe_timeout_us,
                self._max_backoff_us,
                self._write_timeout_us,
                int(COMMIT_AHEAD_S * 1e6),
            ],
        )
        received_s = time.monotonic()
        self.redis_time.sample(int(now_us) / 1e6, sent_s, received_s)
        status, failures = int(status), int(failures)
        if status == -2:
            return Commit(go=False, paused=True, failures=failures)
        if status == -1:
            return Commit(go=False, closed=True, failures=failures)
        if status == 2:
            return Commit(go=False, backing_off=True, wait_s=int(value) / 1e6, failures=failures)
        if status == 1:
            return Commit(go=False, wait_s=int(value) / 1e6, failures=failures)
        at_us = int(value)
        now_s = time.monotonic()
        leave_s = self.redis_time.local_deadline_s(at_us / 1e6, now_s)
        assert leave_s is not None  # sampled above
        return Commit(go=True, wait_s=max(0.0, leave_s - now_s), at_us=at_us, failures=failures)

    def mark_sent(self, committed_at_us: int) -> None:
        """The request committed for `committed_at_us` is in the socket (see MARK_SENT_LUA):
        dated by this host's clock through the bounds, as late as its write can have been."""
        sent_s = time.monotonic()
        latest_s = self.redis_time.redis_latest_s(sent_s)
        written_us = 0 if latest_s is None else math.ceil(latest_s * 1e6)
        now_us = self._mark_sent(keys=self._keys[:1], args=[committed_at_us, written_us])
        self.redis_time.sample(int(now_us) / 1e6, sent_s, time.monotonic())

    def widen_margin(self) -> float:
        """eSMS answered 160: widen the margin; return the extra margin now (s)."""
        extra_us = self._widen(keys=self._keys[:1], args=[*self._spacing_args, self._interval_us])
        return int(extra_us) / 1e6

    def added_margin_s(self) -> float:
        """What Code 160s last added to the margin (s), before it fades (for status)."""
        return float(self._redis.hget(self._keys[0], "extra_us") or 0) / 1e6

    @property
    def _spacing_args(self) -> list[int]:
        return [self._interval_us, self._margin_us]
