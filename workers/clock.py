"""Clocks. Production decisions use the Redis server's clock so hosts' clocks don't matter."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import redis


class Clock(Protocol):
    def now_s(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None: ...


def as_datetime(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


class RedisClock:
    """Local time corrected by the offset to Redis TIME, re-measured every `resync_s`."""

    def __init__(self, client: redis.Redis, resync_s: float = 60.0) -> None:
        self._client = client
        self._resync_s = resync_s
        self._offset_s = 0.0
        self._synced_at = float("-inf")

    def now_s(self) -> float:
        local = time.time()
        if time.monotonic() - self._synced_at > self._resync_s:
            self._sync()
            local = time.time()
        return local + self._offset_s

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def _sync(self) -> None:
        before = time.time()
        seconds, micros = self._client.time()
        after = time.time()
        self._offset_s = seconds + micros / 1e6 - (before + after) / 2
        self._synced_at = time.monotonic()


class ManualClock:
    """A clock tests move by hand; sleeping advances it."""

    def __init__(self, start_s: float) -> None:
        self.now = start_s

    def now_s(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
