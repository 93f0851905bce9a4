"""The project's Redis clients, built in one place.

No command is retried by the client: redis-py retries a command whose connection broke after
it was sent, and a script that already ran (a settle counting its request, a lease taking
RefIds) would run twice. A failure reaches the caller instead, whose own retry starts the
step afresh (a new request token, Celery's retry, the receiver's 503): each of those is safe
to repeat (tests/test_redis_retry.py).
"""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from esms_callbacks.tuning import HEALTH_CHECK_EVERY_S, SOCKET_TIMEOUT_S


def connect(url: str, timeout_s: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    """A client for `url` that never retries a command by itself."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=HEALTH_CHECK_EVERY_S,
        retry=Retry(NoBackoff(), 0),
    )


def connect_async(url: str, timeout_s: float = SOCKET_TIMEOUT_S) -> aioredis.Redis:
    """The asyncio client (the push receiver) for `url`, never retrying a command either."""
    from redis.asyncio.retry import Retry as AsyncRetry

    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=HEALTH_CHECK_EVERY_S,
        retry=AsyncRetry(NoBackoff(), 0),
    )
