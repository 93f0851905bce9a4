"""Writes the project relies on, confirmed by replicas before it acts on them.

Redis replicates asynchronously: a write the primary took can vanish in a failover, with the
RefIds or events in it. WAIT makes one connection wait until enough replicas have everything
it wrote. The fence writes a key of its own and WAITs on that connection: replication is one
ordered stream, so the confirmation covers every write this process finished before it
(scripts, a broker's LPUSH on another connection). In a Redis Cluster the key is the
account's, so the WAIT goes to the primary of the account's shard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis

from esms_callbacks.engine.redis_connect import node_for, refreshing_cluster
from esms_callbacks.errors import NotDurable

FENCE_TTL_MS = 60_000  # the fence's value is never read; it only needs to be a write
NOT_DURABLE = "not_durable"  # the stats hash's counter of writes no replica confirmed in time


class ReplicaFence:
    """`confirm()` returns once `replicas` replicas hold this process's writes so far;
    `on_not_durable` is called (best effort, for the metrics) each time they do not."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        replicas: int,
        timeout_s: float,
        on_not_durable: Callable[[], None] | None = None,
    ) -> None:
        self._redis = client
        self._key = key
        self.replicas = replicas
        self._timeout_ms = max(1, int(timeout_s * 1000))
        self._on_not_durable = on_not_durable

    def confirm(self) -> None:
        """Raise NotDurable when fewer replicas confirm within the timeout; nothing when
        no replica is asked for (ESMS_REDIS_REPLICAS=0)."""
        if self.replicas <= 0:
            return
        try:
            self._confirm()
        except NotDurable:
            if self._on_not_durable is not None:
                self._on_not_durable()
            raise

    def _confirm(self) -> None:
        pipe = node_for(self._redis, self._key).pipeline(transaction=False)  # write, WAIT
        pipe.set(self._key, "1", px=FENCE_TTL_MS)
        pipe.execute_command("WAIT", self.replicas, self._timeout_ms)  # type: ignore[no-untyped-call]
        try:
            with refreshing_cluster(self._redis):
                _, acked = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _lost(exc, "the writes") from exc
        _check(int(acked), self.replicas, self._timeout_ms, "the writes")


class AsyncReplicaFence:
    """The same confirmation for the receiver's asyncio client: a push is answered 200 only
    once its inbox entry is on the replicas."""

    def __init__(
        self,
        client: Any,
        key: str,
        replicas: int,
        timeout_s: float,
        on_not_durable: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._redis = client
        self._key = key
        self.replicas = replicas
        self._timeout_ms = max(1, int(timeout_s * 1000))
        self._on_not_durable = on_not_durable

    async def confirm(self) -> None:
        """Raise NotDurable when fewer replicas confirm within the timeout."""
        if self.replicas <= 0:
            return
        try:
            await self._confirm()
        except NotDurable:
            if self._on_not_durable is not None:
                await self._on_not_durable()
            raise

    async def _confirm(self) -> None:
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        pipe = self._redis.pipeline(transaction=False)  # one connection per node: write, WAIT
        pipe.set(self._key, "1", px=FENCE_TTL_MS)
        if isinstance(self._redis, AsyncCluster):
            node = self._redis.get_node_from_key(self._key)
            pipe.execute_command("WAIT", self.replicas, self._timeout_ms, target_nodes=node)
        else:
            pipe.execute_command("WAIT", self.replicas, self._timeout_ms)
        try:
            _, acked = await pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _lost(exc, "the push") from exc
        _check(int(acked), self.replicas, self._timeout_ms, "the push")


def _lost(exc: Exception, what: str) -> NotDurable:
    # The primary went away before its replicas answered (killed, failed over): what it took
    # may be gone with it, and a fence on the next primary would not cover it.
    return NotDurable(
        f"the primary was lost before replicas confirmed {what} ({type(exc).__name__})"
    )


def _check(acked: int, replicas: int, timeout_ms: int, what: str) -> None:
    if acked < replicas:
        raise NotDurable(
            f"{acked} of {replicas} replicas confirmed {what} within {timeout_ms} ms "
            "(ESMS_REDIS_REPLICAS, ESMS_REDIS_REPLICA_TIMEOUT)"
        )
