"""The global rate limit: requests of one account spaced at least `spacing_s` apart.

Two steps, both atomic Lua on the Redis server's clock:
- reserve: claim the next free slot (GCRA-style theoretical arrival time), so each waiter
  sleeps exactly until its own slot instead of polling Redis;
- commit: right before sending, check against the last request actually sent (a waiter that
  overslept must not squeeze the next one) and that the window is still open.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

# KEYS[1]: rate hash. ARGV[1]: spacing (us). ARGV[2]: latest slot start allowed (us, 0 = none).
# Returns the wait (us) until the reserved slot, or -1 if the slot would start too late
# (nothing is reserved then).
RESERVE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local spacing = tonumber(ARGV[1])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat_us') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last_us') or '0')
local slot = math.max(tat, now, last + spacing)
local not_after = tonumber(ARGV[2])
if not_after > 0 and slot >= not_after then return -1 end
redis.call('HSET', KEYS[1], 'tat_us', string.format('%.0f', slot + spacing))
redis.call('PEXPIRE', KEYS[1], math.max(60000, math.ceil((slot - now + spacing) / 1000) * 10))
return slot - now
"""

# KEYS[1]: rate hash. ARGV[1]: spacing (us). ARGV[2], ARGV[3]: window open and close (us; 0 0
# = always open). Returns {0, now (us)} and records the send, or {1, wait (us)} still needed
# after the last request sent, or {-1, 0} if the window is not open now.
COMMIT_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local opens, closes = tonumber(ARGV[2]), tonumber(ARGV[3])
if closes > 0 and (now < opens or now >= closes) then return {-1, 0} end
local last = tonumber(redis.call('HGET', KEYS[1], 'last_us') or '0')
local ready = last + tonumber(ARGV[1])
if now < ready then return {1, string.format('%.0f', math.max(1, ready - now))} end
redis.call('HSET', KEYS[1], 'last_us', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], math.max(60000, math.ceil(tonumber(ARGV[1]) / 1000) * 10))
return {0, string.format('%.0f', now)}
"""


@dataclass(frozen=True)
class Commit:
    go: bool
    wait_s: float = 0.0  # when not go and not closed: sleep this long, then commit again
    closed: bool = False
    at_s: float = 0.0  # when go: the send's time on the Redis clock


class RateLimiter:
    def __init__(self, client: redis.Redis, key: str, spacing_s: float) -> None:
        self._key = key
        self._spacing_us = int(spacing_s * 1e6)
        self._reserve = client.register_script(RESERVE_LUA)
        self._commit = client.register_script(COMMIT_LUA)

    def reserve(self, not_after_s: float | None = None) -> float | None:
        """Reserve the next slot; return seconds to wait for it, or None if it is too late."""
        limit_us = 0 if not_after_s is None else int(not_after_s * 1e6)
        wait_us = int(self._reserve(keys=[self._key], args=[self._spacing_us, limit_us]))
        return None if wait_us < 0 else wait_us / 1e6

    def commit(self, window_s: tuple[float, float] | None = None) -> Commit:
        """Record a send now if spacing and the window (open, close epoch s) allow it."""
        opens_us, closes_us = (
            (0, 0) if window_s is None else (int(window_s[0] * 1e6), int(window_s[1] * 1e6))
        )
        status, value = self._commit(keys=[self._key], args=[self._spacing_us, opens_us, closes_us])
        if int(status) < 0:
            return Commit(go=False, closed=True)
        if int(status) > 0:
            return Commit(go=False, wait_s=int(value) / 1e6)
        return Commit(go=True, at_s=int(value) / 1e6)
