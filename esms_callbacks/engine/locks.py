"""A Redis lock with a time to live, released (or extended) only by the holder that took it.

`with lock.acquire() as held:` holds the lock for the block when `held` (dramatiq's limiter
shape); `lock.extend()` inside it keeps a long holder's lock. A holder that dies frees it when
its TTL runs out; a holder that outlived its TTL, while another took the lock, must neither
free nor extend the other's, so both compare the token and act in one step
(lua/lock_release.lua, lua/lock_extend.lua).
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
        self._token = ""  # while this Lock holds the key
        self._release = register_file(client, "lock_release")
        self._extend = register_file(client, "lock_extend")

    @contextmanager
    def acquire(self) -> Iterator[bool]:
        """Take the lock unless another holds it; yield whether it was taken, and release it
        (if still this holder's) on leaving."""
        token = uuid.uuid4().hex
        held = bool(self._redis.set(self._key, token, nx=True, px=self._ttl_ms))
        self._token = token if held else ""
        try:
            yield held
        finally:
            self._token = ""
            if held:
                with suppress(RedisError):  # unreachable: the lock frees itself at its TTL
                    self._release(keys=[self._key], args=[token])

    def extend(self) -> bool:
        """Give the lock its full TTL again; whether this holder still held it."""
        if not self._token:
            return False
        return bool(self._extend(keys=[self._key], args=[self._token, self._ttl_ms]))
