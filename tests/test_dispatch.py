"""Starting drainers (engine/dispatch.py) against real Redis: up to the number wanted, one
asking per second unless forced."""

from __future__ import annotations

import uuid

import pytest

from esms_callbacks.accounts import Account
from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.dispatch import DrainerDispatch
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.semaphore import LeaseSemaphore
from esms_callbacks.settings import Settings
from tests.helpers import T0


@pytest.fixture
def env(redis_client):
    keys = AccountKeys(f"test-dispatch-{uuid.uuid4().hex}")
    slots = LeaseSemaphore(redis_client, keys.drainers, lease_s=10)
    queued: list[str] = []
    dispatch = DrainerDispatch(
        redis_client,
        keys,
        Settings(),
        Account(keys.account_id, keys.account_id),
        Backlog(redis_client, keys, done_ttl_s=3600),
        slots,
        wanted=lambda: 3,
        queue_drain=queued.append,
    )
    yield dispatch, slots, queued, keys
    for key in redis_client.scan_iter(match=f"{keys.prefix}*"):
        redis_client.delete(key)


def test_drainers_are_queued_up_to_the_number_wanted(env):
    dispatch, slots, queued, _ = env
    # given one drainer running of three wanted
    slots.acquire(T0, 3)
    # when asked: two more are queued
    assert dispatch.request(T0) == 2
    assert len(queued) == 2


def test_a_burst_of_askings_queues_once_and_queued_drains_count_until_they_expire(env):
    dispatch, slots, queued, _ = env
    assert dispatch.request(T0) == 3
    # asked again within the second (another producer): nothing more
    assert dispatch.request(T0) == 0
    # forced (a drain that used its budget asks for its successor) past the lock, the three
    # queued and not yet started still count: beat's pulses do not pile drains up
    assert dispatch.request(T0 + 5, force=True) == 0
    # one of them started and holds a place, the two others expired unrun: two again
    dispatch.dequeue(queued[0])
    slots.acquire(T0 + 61, 3)
    assert dispatch.request(T0 + 61, force=True) == 2
    assert len(queued) == 5


def test_no_drainer_is_queued_when_enough_run(env):
    dispatch, slots, queued, _ = env
    for _ in range(3):
        slots.acquire(T0, 3)
    assert dispatch.request(T0, force=True) == 0
    assert queued == []


def test_a_stopping_worker_gives_its_drainer_places_up_until_it_serves_again(env):
    dispatch, slots, _, keys = env
    stopping_key = keys.stopping("w1@host")
    token = slots.acquire(T0, 3, stopping_key=stopping_key)
    assert token is not None
    # when its warm shutdown begins, its drain loses its place at the next step
    dispatch.worker_stopping("w1@host")
    assert slots.acquire(T0, 3, token, stopping_key) is None
    assert slots.holders(T0) == 0
    # a worker restarted under the same name drains again
    dispatch.worker_started("w1@host")
    assert slots.acquire(T0, 3, stopping_key=stopping_key) is not None
