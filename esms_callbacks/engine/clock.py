"""Clocks. Production decisions use the Redis server's clock, so hosts' clocks need not agree
with it (only run at nearly its rate over a second: see engine.redis_time)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

import redis

from esms_callbacks.engine.redis_connect import node_for, refreshing_cluster
from esms_callbacks.tuning import SPIN_S


class Clock(Protocol):
    def now_s(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def sleep_exactly(self, seconds: float) -> None:
        """Sleep at least `seconds` and as little more as can be (a request's send moment)."""
        ...


def as_datetime(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


class RedisClock:
    """The Redis server's clock, read once a `resync_s` and carried forward with this host's
    monotonic clock: a step of the host's wall clock changes nothing, so one host can never
    think every other host's leases expired."""

    def __init__(self, client: redis.Redis, resync_s: float = 60.0, route_key: str = "") -> None:
        self._client = client
        self._route_key = route_key  # in a Cluster: read the clock of the node serving this key
        self._resync_s = resync_s
        self._redis_at_sync_s = 0.0
        self._monotonic_at_sync_s = float("-inf")

    def now_s(self) -> float:
        if time.monotonic() - self._monotonic_at_sync_s > self._resync_s:
            self._sync()
        return self._redis_at_sync_s + (time.monotonic() - self._monotonic_at_sync_s)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def sleep_exactly(self, seconds: float) -> None:
        # A sleep wakes late (docs/benchmarks.md): sleep all but the last SPIN_S, then spin
        # on the monotonic clock to the moment.
        deadline_s = time.monotonic() + seconds
        if seconds > SPIN_S:
            time.sleep(seconds - SPIN_S)
        while time.monotonic() < deadline_s:
            pass

    def _sync(self) -> None:
        client = node_for(self._client, self._route_key) if self._route_key else self._client
        before = time.monotonic()
        with refreshing_cluster(self._client):
            seconds, micros = client.time()
        after = time.monotonic()
        self._redis_at_sync_s = seconds + micros / 1e6
        self._monotonic_at_sync_s = (before + after) / 2


class ManualClock:
    """A clock tests move by hand; sleeping advances it."""

    def __init__(self, start_s: float) -> None:
        self.now = start_s

    def now_s(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)

    def sleep_exactly(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.now += seconds
