"""A Redis semaphore of leases: at most N holders, each lease expiring unless renewed.

Used to cap how many worker processes drain one account at once, across every host; a holder
that dies frees its place when its lease expires.
"""

from __future__ import annotations

import uuid

import redis

from esms_callbacks.engine.scripts import register_file


class LeaseSemaphore:
    def __init__(self, client: redis.Redis, key: str, lease_s: float) -> None:
        self._redis = client
        self._key = key
        self._lease_ms = int(lease_s * 1000)
        self._acquire = register_file(client, "semaphore_acquire")

    def acquire(
        self, now_s: float, limit: int, token: str | None = None, stopping_key: str = ""
    ) -> str | None:
        """Take (or renew) one of `limit` places; return its token, or None when all places
        are held (a holder keeps its place when the limit drops below the holders) or the
        flag at `stopping_key` says the holder's worker is shutting down."""
        token = token or uuid.uuid4().hex
        now_ms = int(now_s * 1000)
        held = self._acquire(
            keys=[self._key, stopping_key or f"{self._key}:never-stopping"],
            args=[now_ms, now_ms + self._lease_ms, limit, token],
        )
        return token if int(held) else None

    def release(self, token: str) -> None:
        self._redis.zrem(self._key, token)

    def holders(self, now_s: float) -> int:
        return int(self._redis.zcount(self._key, int(now_s * 1000), "+inf"))
