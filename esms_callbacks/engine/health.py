"""The account's health in Redis: its pause, when eSMS refuses the account, and its circuit
breaker, when eSMS fails; both tell every drainer of the account that no request may go.

The pause (AccountPause): one string key whose value is the reason and whose TTL is the pause
(ESMS_ACCOUNT_PAUSE), set after an auth or balance error; it ends by itself, or sooner when an
operator deletes it.

The breaker (Breaker): transient eSMS failures slow the account only when they come in a row,
and one success ends the slowdown.

closed     requests go at the full rate; a failure costs only itself (a Code 160 also holds
           the account for one interval: eSMS asked us to slow down)
open       after `trip_after` failures in a row: no request until `open_until`, which doubles
           with each further failure from `base_s` up to `max_s`
half-open  once `open_until` passed: exactly one probe request (the limiter's commit lets it
           through and holds the others); its success closes the breaker, its failure opens
           it again for twice as long. A probe that never reports frees the way after the
           probe timeout.

State lives in one Redis hash (`failures`, `open_until_us`, `probe_until_us`, Redis clock),
shared by every drainer of the account. The state machine is one Lua file,
engine/lua/breaker.lua: breaker_failure.lua opens the breaker, engine.limiter's commit
(limiter_commit.lua) gates and probes with it, and reads the pause too: it alone decides
that a request may go.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from esms_callbacks.engine.redis_connect import node_for, refreshing_cluster
from esms_callbacks.engine.redis_values import as_text
from esms_callbacks.engine.scripts import register_file


@dataclass(frozen=True)
class Failure:
    in_a_row: int  # failures in a row, this one included
    wait_s: float  # before the account may send again; 0 while the breaker stays closed


class Breaker:
    def __init__(
        self, client: redis.Redis, key: str, trip_after: int, base_s: float, max_s: float
    ) -> None:
        self._redis = client
        self._key = key
        self._args = [trip_after, int(base_s * 1e6), int(max_s * 1e6)]
        self._failure = register_file(client, "breaker", "breaker_failure")

    def record_failure(self, hold_s: float = 0.0) -> Failure:
        """Count a transient failure; return the streak and how long the account waits.

        `hold_s` opens the breaker for at least that long even on a first failure (eSMS
        said 160: the next slot would be refused too)."""
        in_a_row, wait_us = self._failure(keys=[self._key], args=[*self._args, int(hold_s * 1e6)])
        return Failure(int(in_a_row), int(wait_us) / 1e6)

    def record_success(self) -> None:
        """Close the breaker: the account is healthy again. (A drainer closes it in the same
        round trip that settles an answered request: engine.backlog's settle.)"""
        self._redis.delete(self._key)

    def failures_in_a_row(self) -> int:
        """Transient failures since the account's last answered request."""
        return int(float(self._redis.hget(self._key, "failures") or 0))

    def state(self) -> dict[str, float]:
        """The raw state, for status and metrics (times in epoch seconds, 0 if unset)."""
        raw = self._redis.hgetall(self._key)
        values = {as_text(k): float(v) for k, v in raw.items()}
        return {
            "failures_in_a_row": values.get("failures", 0.0),
            "open_until_s": values.get("open_until_us", 0.0) / 1e6,
        }


class AccountPause:
    """The account's pause (`paused` key): set after eSMS refused the account, read by status
    and by whoever decides whether starting drainers is worth it."""

    def __init__(self, client: redis.Redis, key: str, breaker_key: str) -> None:
        self._redis = client
        self._key = key
        self._breaker_key = breaker_key

    def pause(self, reason: str, pause_s: float) -> None:
        """No request of the account for `pause_s`; `reason` is what status shows."""
        self._redis.set(self._key, reason, px=int(pause_s * 1000))

    def lift(self) -> None:
        """End the pause at once (the account's keys changed: they deserve a try)."""
        self._redis.delete(self._key)

    def reason(self) -> str | None:
        """Why the account is paused, or None while it is not."""
        raw = self._redis.get(self._key)
        return as_text(raw) if raw else None

    def blocked(self) -> str:
        """Why no request may go for a while (paused, breaker open), or '': one round trip,
        on the Redis clock. A hint for starting drainers; the limiter's commit enforces it."""
        pipe = node_for(self._redis, self._key).pipeline(transaction=False)  # TIME there
        pipe.exists(self._key)
        pipe.hget(self._breaker_key, "open_until_us")
        pipe.time()
        with refreshing_cluster(self._redis):
            paused, open_until_us, (seconds, micros) = pipe.execute()
        if paused:
            return "account paused"
        if open_until_us and float(open_until_us) > seconds * 1e6 + micros:
            return "backing off after failures"
        return ""
