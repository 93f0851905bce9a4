"""Writes confirmed by replicas (engine/replicas.py), against real redis-servers: a primary of
the test's own and a replica of it (`--replicaof`), the replica paused to stand for one that
lags or is gone."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.limiter import RateLimiter
from esms_callbacks.engine.redis_connect import connect
from esms_callbacks.engine.replicas import ReplicaFence
from esms_callbacks.engine.stats import RequestStats
from esms_callbacks.errors import NotDurable
from esms_callbacks.ops.metrics import AccountCollector
from esms_callbacks.push.inbox import PushRecorder
from esms_callbacks.push.parse import Push
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
            # and acknowledges writes (right after its sync it may not, for a moment)
            client = primary.client()
            wait_until(lambda: confirmed_by_one(client), 10, "the replica acknowledged nothing")
            yield primary, replica


def confirmed_by_one(client: redis.Redis) -> bool:
    pipe = client.pipeline(transaction=False)
    pipe.set("warm-up", "1")
    pipe.execute_command("WAIT", 1, 100)  # type: ignore[no-untyped-call]
    return int(pipe.execute()[1]) == 1


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


def test_writes_no_replica_confirms_are_counted_for_the_metrics(primary_and_replica):
    # given a fence that counts into the account's stats, and the only replica stalled
    primary, replica = primary_and_replica
    keys = AccountKeys("replicas-count")
    stats = RequestStats(primary.client(), keys)
    fence = ReplicaFence(primary.client(), keys.fence, 1, 0.2, stats.count_not_durable)
    fence.confirm()  # confirmed: nothing counted
    assert replica.popen is not None
    os.kill(replica.popen.pid, signal.SIGSTOP)
    try:
        # when two writes go unconfirmed
        for _ in range(2):
            with pytest.raises(NotDurable):
                fence.confirm()
    finally:
        os.kill(replica.popen.pid, signal.SIGCONT)
    # expect both counted, and exported as esms_not_durable_total
    counters = stats.snapshot().counters
    assert counters["not_durable"] == 2
    snapshot = {"account": keys.account_id, "counters": counters, "per_oa": []}
    exported = {
        sample.name: sample.value
        for metric in AccountCollector(lambda: [snapshot]).collect()
        for sample in metric.samples
    }
    assert exported["esms_not_durable_total"] == 2


def test_a_primary_lost_while_replicas_are_asked_is_not_durable(primary_and_replica):
    # given the only replica stalled, so the fence's WAIT is still waiting
    primary, replica = primary_and_replica
    assert replica.popen is not None
    os.kill(replica.popen.pid, signal.SIGSTOP)
    try:
        fence = ReplicaFence(connect(f"redis://127.0.0.1:{primary.port}"), FENCE, 1, 5.0)
        killer = threading.Timer(
            0.3, lambda: primary.client().client_kill_filter(_type="normal", skipme=True)
        )
        killer.start()
        # when the primary drops the fence's connection (killed, failed over) before answering
        # expect NotDurable, which a producer resubmits and a task retries, not a ConnectionError
        with pytest.raises(
            NotDurable, match="primary was lost before replicas confirmed the writes"
        ):
            fence.confirm()
        killer.join()
    finally:
        os.kill(replica.popen.pid, signal.SIGCONT)


def test_no_replica_asked_for_costs_no_command():
    # a client whose every command would fail: with ESMS_REDIS_REPLICAS=0 none is sent
    unreachable = redis.Redis(port=1, socket_connect_timeout=0.1)
    ReplicaFence(unreachable, FENCE, replicas=0, timeout_s=1.0).confirm()


def test_a_submission_not_confirmed_is_retried_not_acknowledged():
    assert NotDurable in FETCH_TASK_RETRY["autoretry_for"]


def test_a_primary_no_replica_follows_grants_no_request(primary_and_replica):
    # given the account's last request a second ago, on a primary whose only replica stopped
    # following it (as a primary Sentinel demoted while it still answers)
    primary, replica = primary_and_replica
    keys = AccountKeys("replicas-limit")

    def limiter(replicas: int) -> RateLimiter:  # a drainer in a process of its own
        gate = (keys.rate, keys.paused, keys.health)
        return RateLimiter(
            primary.client(), gate, 0.05, 0.0, replicas=replicas, replica_timeout_s=0.2
        )

    first = limiter(1).commit()
    assert first.go  # while the replica follows
    limiter(1).mark_sent(first.at_us)
    primary.client().hincrby(keys.rate, "last_us", -1_000_000)
    assert replica.popen is not None
    os.kill(replica.popen.pid, signal.SIGSTOP)
    try:
        # expect no grant while replicas are asked for; without them it would go
        held = limiter(1).commit()
        assert not held.go and not held.refused
        # (the unconfirmed grant holds the way for a write timeout, as a write never made)
        primary.client().hdel(keys.rate, "sending_us")
        primary.client().hincrby(keys.rate, "last_us", -1_000_000)
        assert limiter(0).commit().go
    finally:
        os.kill(replica.popen.pid, signal.SIGCONT)


def test_a_push_is_answered_only_once_a_replica_holds_it(primary_and_replica):
    # given the receiver's recorder on a primary with one replica asked for
    primary, replica = primary_and_replica
    keys = AccountKeys("replicas-push")
    push = Push("ref-1", "oa-1", {"SMSID": "ref-1", "SendStatus": 5})

    async def record() -> None:
        client = aioredis.Redis(port=primary.port)
        try:
            recorder = PushRecorder(client, keys, 0, 100, replicas=1, replica_timeout_s=0.2)
            assert (await recorder.record(push, "203.0.113.7")).ok
        finally:
            await client.aclose()

    # expect it recorded and confirmed while the replica follows
    asyncio.run(record())
    # and NotDurable (the receiver answers 503, eSMS pushes again) once it stalls
    assert replica.popen is not None
    os.kill(replica.popen.pid, signal.SIGSTOP)
    try:
        with pytest.raises(NotDurable, match="confirmed the push"):
            asyncio.run(record())
    finally:
        os.kill(replica.popen.pid, signal.SIGCONT)
    # counted in the account's stats (esms_not_durable_total)
    assert primary.client().hget(keys.stats, "not_durable") == b"1"
