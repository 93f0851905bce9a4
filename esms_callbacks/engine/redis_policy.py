"""Deployment check at worker start: the Redis must not evict keys.

The rate state and the done memory carry TTLs, so a `volatile-*` policy evicts them first
(two requests too close together; a second terminal event), and an `allkeys-*` policy may
evict anything, waiting RefIds included. Only `noeviction` keeps every promise.
"""

from __future__ import annotations

import logging

import redis

log = logging.getLogger(__name__)
SAFE_POLICY = "noeviction"


def eviction_problem(client: redis.Redis) -> str:
    """Why this Redis cannot be used (with the fix), or '' if it can or cannot be asked. A
    Cluster is asked on every primary: accounts live on all of them."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        for node in client.get_primaries():
            problem = eviction_problem(client.get_redis_connection(node))
            if problem:
                return f"{node.name}: {problem}"
        return ""
    try:
        answer = client.config_get("maxmemory-policy")
    except redis.ResponseError as exc:  # managed Redis often disables CONFIG
        log.warning("could not check Redis's maxmemory-policy (%s); it must be noeviction", exc)
        return ""
    policy = answer.get("maxmemory-policy", SAFE_POLICY)
    if isinstance(policy, bytes):
        policy = policy.decode()
    if policy == SAFE_POLICY:
        return ""
    return (
        f"Redis's maxmemory-policy is {policy}: it can evict the rate state, the done memory or "
        "waiting RefIds (requests too close together, a second terminal event, lost RefIds). "
        "Run `CONFIG SET maxmemory-policy noeviction` (and set it in redis.conf), or give this "
        "project a Redis of its own with ESMS_REDIS_URL"
    )
