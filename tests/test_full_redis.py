"""A Redis that is full (maxmemory reached under noeviction): clear errors, nothing lost.

Each test runs a redis-server of its own and fills it by lowering its maxmemory below what
it holds (writes fail with OOM, reads and deletes still work), then makes room again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.signals import task_postrun

from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.keys import AccountKeys
from tests.helpers import T0, account_for, celery_config_for, wait_until, whereabouts
from tests.procs import PrivateRedis

OA = "oa-full"


def fill(client: redis.Redis) -> None:
    """Make every write that adds data fail with OOM from now on."""
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", max(1024, used // 2))


def make_room(client: redis.Redis) -> None:
    client.config_set("maxmemory", 0)


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    with PrivateRedis(tmp_path / "redis", options=("--maxmemory-policy", "noeviction")) as server:
        yield server


def test_no_script_half_applies_when_redis_is_full(full_redis):
    # given a RefId in a request (leased), then a full Redis
    client = full_redis.client()
    backlog = Backlog(client, AccountKeys("full"), done_ttl_s=3600)
    backlog.park(OA, ["r1"], T0)
    assert backlog.lease_next(T0, 10, 60, "tok") is not None
    fill(client)

    # when the request hands it back (ZREM from leased, then ZADD to due: a write that adds)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        backlog.unlease(OA, "tok", ["r1"], T0 + 5)

    # expect nothing done at all: it is still leased (its lease expires; it is asked again),
    # not taken out of `leased` and never put back in `due`
    assert whereabouts(backlog, OA, "r1").where == "leased"
    make_room(client)
    _, again = backlog.lease_next(T0 + 61, 10, 60, "tok2") or ("", [])
    assert [item.ref_id for item in again] == ["r1"]


@contextlib.contextmanager
def worker_on(server: PrivateRedis, settings: Any) -> Iterator[Any]:
    """An in-process worker whose broker and state are both `server`, with a short
    visibility timeout, so that an unacknowledged task comes back within seconds."""
    from celery.contrib.testing.app import TestApp, setup_default_app
    from celery.contrib.testing.worker import start_worker

    import esms_callbacks.tasks  # noqa: F401
    from esms_callbacks.tasks.context import worker_context

    config = celery_config_for(server.url)
    config["broker_transport_options"] = {
        "visibility_timeout": 3,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
    app = TestApp("esms-full", config=config)
    worker_context.use_settings(settings)
    try:
        with (
            setup_default_app(app),
            start_worker(
                app,
                pool="threads",
                concurrency=2,
                perform_ping_check=False,
                queues=["esms.fetch"],
                loglevel="WARNING",
                shutdown_timeout=10,
            ),
        ):
            yield app
    finally:
        worker_context.use_settings(None)


def test_a_submission_taken_while_redis_is_full_is_kept_and_parked_once_there_is_room(
    full_redis, make_settings
):
    # given a worker whose broker and state share one Redis, and a submission it holds
    # (a countdown, so that it takes it now and runs it after the Redis is full)
    settings = make_settings(broker_url=full_redis.url, redis_url=full_redis.url, retry_base_s=0.1)
    client = full_redis.client()
    backlog = Backlog(client, AccountKeys(account_for(settings).key_id), 3600)
    ran = threading.Event()

    def on_run(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "name", "") == "esms.fetch_callbacks":
            ran.set()

    task_postrun.connect(on_run, weak=False)
    with worker_on(full_redis, settings) as app:
        app.send_task(
            "esms.fetch_callbacks",
            kwargs={"ref_ids": ["f1", "f2"], "oa_id": OA},
            queue="esms.fetch",
            routing_key="esms.fetch",
            countdown=1.5,
        )
        wait_until(
            lambda: client.hlen("unacked") == 1, 10, "the worker did not take the submission"
        )
        fill(client)

        # when it runs while Redis is full (parking fails, and so would queueing a retry)
        wait_until(ran.is_set, 15, "the submission did not run")

        # expect the submission kept (unacknowledged, or back in its queue), not dropped
        assert client.hlen("unacked") + client.llen("esms.fetch") == 1
        assert backlog.where(OA, "f1") is None

        # and once there is room, its RefIds parked
        make_room(client)
        wait_until(
            lambda: [oa.waiting for oa in backlog.per_oa(T0)] == [2], 30, "the submission was lost"
        )
    task_postrun.disconnect(on_run)


def test_a_producer_is_told_clearly_that_a_full_broker_queued_nothing(full_redis):
    # given a producer whose broker Redis is full
    from celery import Celery

    from esms_callbacks.errors import BrokerFull
    from esms_callbacks.tasks.fetch import ValidatingTask

    app = Celery("producer-full", config_source=celery_config_for(full_redis.url))

    @app.task(name="esms.fetch_callbacks", base=ValidatingTask, shared=False)
    def task(ref_ids: object = None, oa_id: object = None) -> None:
        """The project's task as a producer sees it: validated and split, then queued."""

    task.delay(["warm-up"], OA)  # the connection and the queue exist, as in a running app
    client = full_redis.client()
    fill(client)

    # when it submits RefIds
    with pytest.raises(BrokerFull) as caught:
        task.delay(["p1", "p2"], OA)

    # expect an error that says what happened and what to do, and nothing queued
    message = str(caught.value)
    assert "out of memory" in message and "nothing was queued" in message
    make_room(client)
    assert client.llen("esms.fetch") == 1  # the warm-up only
