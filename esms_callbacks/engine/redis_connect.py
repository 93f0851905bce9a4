"""The project's Redis clients, built in one place: a single server, a Sentinel-monitored
master (which the client finds again after a failover) or a Redis Cluster.

No command is retried by the client: redis-py retries a command whose connection broke after
it was sent, and a script that already ran (a settle counting its request, a lease taking
RefIds) would run twice. A failure reaches the caller instead, whose own retry starts the
step afresh (a new request token, Celery's retry, the receiver's 503): each of those is safe
to repeat (tests/test_redis_retry.py). Scripts reload themselves where the server has lost
them (a promoted replica starts with an empty script cache): redis-py's Script does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from esms_callbacks.settings import RedisTarget
from esms_callbacks.tuning import HEALTH_CHECK_EVERY_S, SOCKET_TIMEOUT_S

SENTINEL_PORT = 26379


def connect(target: RedisTarget | str, timeout_s: float = SOCKET_TIMEOUT_S) -> redis.Redis:
    """A client for `target` that never retries a command by itself."""
    target = RedisTarget(target) if isinstance(target, str) else target
    options = _options(timeout_s)
    if target.is_sentinel:
        from redis.sentinel import Sentinel

        sentinels = _sentinel_parts(target.url)[0]
        found = Sentinel(  # type: ignore[no-untyped-call]
            sentinels, sentinel_kwargs=_sentinel_options(target, timeout_s)
        )
        return found.master_for(  # type: ignore[no-untyped-call,no-any-return]
            target.sentinel_master, retry=Retry(NoBackoff(), 0), **_master_options(target, options)
        )
    if is_cluster(target, timeout_s):
        from redis.cluster import RedisCluster

        # Typed as the plain client: the project uses the commands both have.
        return cast(
            redis.Redis,
            RedisCluster.from_url(target.url, retry=Retry(NoBackoff(), 0), **options),
        )
    return redis.Redis.from_url(target.url, retry=Retry(NoBackoff(), 0), **options)


def connect_async(target: RedisTarget | str, timeout_s: float = SOCKET_TIMEOUT_S) -> aioredis.Redis:
    """The asyncio client (the push receiver) for `target`, never retrying a command either."""
    from redis.asyncio.retry import Retry as AsyncRetry

    target = RedisTarget(target) if isinstance(target, str) else target
    options = _options(timeout_s)
    if target.is_sentinel:
        from redis.asyncio.sentinel import Sentinel as AsyncSentinel

        sentinels = _sentinel_parts(target.url)[0]
        found = AsyncSentinel(  # type: ignore[no-untyped-call]
            sentinels, sentinel_kwargs=_sentinel_options(target, timeout_s)
        )
        return found.master_for(  # type: ignore[no-any-return]
            target.sentinel_master,
            retry=AsyncRetry(NoBackoff(), 0),
            **_master_options(target, options),
        )
    if is_cluster(target, timeout_s):
        from redis.asyncio.cluster import RedisCluster as AsyncCluster

        return cast(
            aioredis.Redis,
            AsyncCluster.from_url(target.url, retry=AsyncRetry(NoBackoff(), 0), **options),
        )
    return aioredis.Redis.from_url(target.url, retry=AsyncRetry(NoBackoff(), 0), **options)


def is_cluster(target: RedisTarget, timeout_s: float = SOCKET_TIMEOUT_S) -> bool:
    """Whether `target` is a Redis Cluster: as its setting says, or (auto) as the server
    answers `INFO cluster`. Raises redis.ConnectionError when it cannot be asked."""
    if target.cluster != "auto" or target.is_sentinel:
        return target.cluster == "on"
    with redis.Redis.from_url(
        target.url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    ) as probe:
        return bool(probe.info("cluster").get("cluster_enabled"))


def _options(timeout_s: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
        "health_check_interval": HEALTH_CHECK_EVERY_S,
    }


def _sentinel_parts(url: str) -> tuple[list[tuple[str, int]], str | None, str | None, int]:
    """Celery's Sentinel URL: every `;`-separated part names a sentinel; the master's password
    and the database number come from the first, as kombu reads them."""
    parts = [urlsplit(part) for part in url.split(";") if part]
    first = parts[0]
    sentinels = [(part.hostname or "localhost", part.port or SENTINEL_PORT) for part in parts]
    username = unquote(first.username) if first.username else None
    password = unquote(first.password) if first.password else None
    return sentinels, username, password, int(first.path.lstrip("/") or 0)  # before the query


TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def sentinel_master_tls(url: str) -> dict[str, Any]:
    """TLS to the master, from the first Sentinel URL's `ssl_*` query options, as kombu reads
    them for the broker (`sentinel://host:26379/0?ssl_cert_reqs=required&ssl_ca_certs=...`)."""
    query = parse_qs(urlsplit(url.split(";")[0]).query)
    found = {name: query[name][0] for name in TLS_OPTIONS if name in query}
    return {"ssl": True, **found} if found else {}


def _master_options(target: RedisTarget, options: dict[str, Any]) -> dict[str, Any]:
    """How to talk to a Sentinel-monitored master: the first URL's user, password, database
    and TLS, and the clients' socket options."""
    _, username, password, db = _sentinel_parts(target.url)
    return {
        "username": username,
        "password": password,
        "db": db,
        **options,
        **sentinel_master_tls(target.url),
    }


def _sentinel_options(target: RedisTarget, timeout_s: float) -> dict[str, Any]:
    """How to talk to the sentinels themselves (nothing is inherited from the master's)."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s}
    if target.sentinel_password:
        options["password"] = target.sentinel_password
    return options


def node_for(client: redis.Redis, key: str) -> redis.Redis:
    """The plain client of the Cluster node serving `key`'s slot (every key of an account
    shares one), or `client` itself when it is not a Cluster client. Scripts that derive
    their keys from a prefix, pipelines of scripts and TIME run there, on the account's shard."""
    from redis.cluster import RedisCluster

    if not isinstance(client, RedisCluster):
        return client
    node: redis.Redis = client.get_redis_connection(client.get_node_from_key(key))
    return node


@contextmanager
def refreshing_cluster(client: redis.Redis) -> Iterator[None]:
    """Around commands sent to a node's own client (node_for): on a connection error the
    Cluster client's slot map is read again, so that the next call finds the shard's new
    primary after a failover (the Cluster client does this for the commands it routes)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.MovedError):
        from redis.cluster import RedisCluster

        if isinstance(client, RedisCluster):
            client.nodes_manager.initialize()
        raise
