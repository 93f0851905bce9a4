"""Writes confirmed by replicas (engine/replicas.py), against real redis-servers: a primary of
the test's own and a replica of it (`--replicaof`), the replica paused to stand for one that
lags or is gone."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest
import redis

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.replicas import ReplicaFence
from esms_callbacks.errors import NotDurable
from esms_callbacks.retry_policy import FETCH_TASK_RETRY
from tests.helpers import wait_until
from tests.procs import PrivateRedis

FENCE = AccountKeys("replicas").fence


# No persistence, no wait at shutdown: these servers only hold what one test writes.
QUICK = ("--appendonly", "no", "--repl-diskless-sync-delay", "0", "--shutdown-timeout", "1")


@pytest.fixture
def primary_and_replica(tmp_path) -> Iterator[tuple[PrivateRedis, PrivateRedis]]:
    with PrivateRedis(tmp_path / "primary", options=QUICK) as primary:
        replica_options = (*QUICK, "--replicaof", "127.0.0.1", str(primary.port))
        with PrivateRedis(tmp_path / "replica", options=replica_options) as replica:
            wait_until(
                lambda: replica.client().info("replication")["master_link_status"] == "up",
                10,
                "the replica did not sync",
            )
            yield primary, replica


def test_a_write_is_confirmed_once_a_replica_has_it(primary_and_replica):
    primary, replica = primary_and_replica
    client = primary.client()
    client.set("written-before", "1")
    ReplicaFence(client, FENCE, replicas=1, timeout_s=2.0).confirm()
    assert replica.client().get("written-before") == b"1"


def test_a_write_no_replica_confirms_in_time_is_not_durable(primary_and_replica):
    # given the only replica stalled (SIGSTOP: it takes nothing more)
    primary, replica = primary_and_replica
    assert replica.popen is not None
    os.kill(replica.popen.pid, signal.SIGSTOP)
    try:
        primary.client().set("written-before", "2")
        # expect the fence to say so, naming the settings, within its timeout
        with pytest.raises(NotDurable, match=r"0 of 1 replicas.*ESMS_REDIS_REPLICAS"):
            ReplicaFence(primary.client(), FENCE, replicas=1, timeout_s=0.2).confirm()
    finally:
        os.kill(replica.popen.pid, signal.SIGCONT)


def test_no_replica_asked_for_costs_no_command():
    # a client whose every command would fail: with ESMS_REDIS_REPLICAS=0 none is sent
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.1)
    ReplicaFence(unreachable, FENCE, replicas=0, timeout_s=1.0).confirm()


def test_a_submission_not_confirmed_is_retried_not_acknowledged():
    assert NotDurable in FETCH_TASK_RETRY["autoretry_for"]
