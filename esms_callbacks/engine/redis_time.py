"""Where this host's monotonic clock stands against the Redis server's clock.

The limiter's commit and mark scripts return the Redis TIME they read. A reading taken by a
call sent at local time `sent_s` and answered at `received_s` says the offset (Redis minus
local) lies between `redis_s - received_s` and `redis_s - sent_s`. The tightest recent
readings bound it to about one fast round trip, where a single reading is only as good as its
own round trip (1-2 ms on a loaded machine, mostly the reply waiting for a CPU). With those
bounds a request granted for a moment on the Redis clock leaves right at it, and its write is
dated on the Redis clock without waiting for another round trip; each bound errs on the safe
side (later moments).
"""

from __future__ import annotations

from dataclasses import dataclass

from esms_callbacks.tuning import CLOCK_DRIFT_PER_S, CLOCK_SAMPLE_MAX_AGE_S


@dataclass
class _Bound:
    offset_s: float  # a bound on Redis time minus local monotonic time
    taken_s: float  # local monotonic time of the reading


class RedisTimeBounds:
    """Bounds on the Redis clock, as seen from this host's monotonic clock."""

    def __init__(self) -> None:
        self._low: _Bound | None = None
        self._high: _Bound | None = None

    def sample(self, redis_s: float, sent_s: float, received_s: float) -> None:
        """Redis read `redis_s` during a call sent at `sent_s`, answered at `received_s`
        (local monotonic seconds)."""
        low, high = _Bound(redis_s - received_s, received_s), _Bound(redis_s - sent_s, sent_s)
        if self._low is None or self._high is None:
            self._low, self._high = low, high
            return
        old_low, old_high = self._low_at(received_s), self._high_at(received_s)
        if high.offset_s < old_low or low.offset_s > old_high:
            # The reading contradicts the bounds: a clock was stepped. Start again from it.
            self._low, self._high = low, high
            return
        if low.offset_s >= old_low or received_s - self._low.taken_s > CLOCK_SAMPLE_MAX_AGE_S:
            self._low = low
        if high.offset_s <= old_high or sent_s - self._high.taken_s > CLOCK_SAMPLE_MAX_AGE_S:
            self._high = high

    def local_deadline_s(self, redis_s: float, now_s: float) -> float | None:
        """The local moment by which the Redis clock has surely reached `redis_s` (None
        before any reading)."""
        if self._low is None:
            return None
        return redis_s - self._low_at(now_s)

    def redis_latest_s(self, local_s: float) -> float | None:
        """The latest Redis time the local moment `local_s` can have been (None before any
        reading)."""
        if self._high is None:
            return None
        return local_s + self._high_at(local_s)

    def _low_at(self, now_s: float) -> float:
        assert self._low is not None
        return self._low.offset_s - CLOCK_DRIFT_PER_S * abs(now_s - self._low.taken_s)

    def _high_at(self, now_s: float) -> float:
        assert self._high is not None
        return self._high.offset_s + CLOCK_DRIFT_PER_S * abs(now_s - self._high.taken_s)
