"""The Sentinel and Cluster fixtures of tests/topology.py against real redis-servers: they
start, replicate, and report a promotion after kill -9 of a primary."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import redis
from redis.sentinel import Sentinel

from tests.topology import MASTER, ClusterTopology, SentinelTopology

PROMOTION_LIMIT_S = 15.0
KEY = "esms:{acct}:rate"


def sentinels_in(url: str) -> list[tuple[str, int]]:
    """(host, port) of every `sentinel://` part of a Celery-style `;`-joined URL."""
    parts = [urlsplit(part) for part in url.split(";")]
    assert all(part.scheme == "sentinel" for part in parts)
    return [(str(part.hostname), int(part.port or 0)) for part in parts]


@pytest.mark.slow
def test_sentinel_failover_keeps_a_replicated_write(tmp_path):
    with SentinelTopology(tmp_path) as topology:
        old_port = topology.master_port()
        replica_ports = sorted(set(topology.servers) - {old_port})
        assert len(replica_ports) == 2

        sentinel = Sentinel(sentinels_in(topology.url()), socket_timeout=5)  # type: ignore[no-untyped-call]
        with sentinel.master_for(MASTER, socket_timeout=5) as master:  # type: ignore[no-untyped-call]
            master.set(KEY, "before")
            assert master.wait(len(replica_ports), 5000) == len(replica_ports)
        sentinel.close()
        for port in replica_ports:
            with topology.client_for(port) as replica:
                assert replica.get(KEY) == b"before"

        topology.kill_primary()
        took_s = topology.wait_for_new_primary(old_port, timeout_s=2 * PROMOTION_LIMIT_S)
        assert took_s < PROMOTION_LIMIT_S

        new_port = topology.master_port()
        assert new_port in replica_ports
        with topology.client_for(new_port) as new_master:
            assert new_master.role()[0] in ("master", b"master")
            assert new_master.get(KEY) == b"before"

        topology.restart(old_port)
        with topology.client_for(old_port) as old_master:
            assert old_master.role()[0] in ("slave", b"slave")
            assert old_master.get(KEY) == b"before"


@pytest.mark.slow
def test_cluster_promotes_the_replica_of_a_killed_primary(tmp_path):
    with ClusterTopology(tmp_path) as cluster:
        old_port = cluster.owner_port(KEY)
        with cluster.client_for(old_port) as owner:
            owner.set(KEY, "before")
            assert owner.wait(1, 5000) == 1
        with redis.RedisCluster.from_url(cluster.url()) as client:
            assert client.get(KEY) == b"before"

        cluster.kill_port(old_port)
        took_s = cluster.wait_for_promotion(old_port, KEY, timeout_s=2 * PROMOTION_LIMIT_S)
        assert took_s < PROMOTION_LIMIT_S

        new_port = cluster.owner_port(KEY)
        assert new_port != old_port
        with cluster.client_for(new_port) as new_owner:
            assert new_owner.get(KEY) == b"before"
