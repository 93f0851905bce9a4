"""A Redis lock with a time to live, released only by the holder that took it.

`with Lock(client, key, ttl_s).acquire() as held:` holds the lock for the block when `held`
(dramatiq's limiter shape). A holder that dies frees it when its TTL runs out; a holder that
outlived its TTL, while another took the lock, must not free the other's, so the release
compares and deletes in one step (lua/lock_release.lua).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import redis
from redis.exceptions import RedisError

from esms_callbacks.engine.scripts import register_file


class Lock:
    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self._redis = client
        self._key = key
        self._ttl_ms = int(ttl_s * 1000)
        self._release = register_file(client, "lock_release")

    @contextmanager
    def acquire(self) -> Iterator[bool]:
        """Take the lock unless another holds it; yield whether it was taken, and release it
        (if still this holder's) on leaving."""
        token = uuid.uuid4().hex
        held = bool(self._redis.set(self._key, token, nx=True, px=self._ttl_ms))
        try:
            yield held
        finally:
            if held:
                with suppress(RedisError):  # unreachable: the lock frees itself at its TTL
                    self._release(keys=[self._key], args=[token])
