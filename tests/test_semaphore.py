"""The drainer places (esms_callbacks/engine/semaphore.py) against real Redis, on a manual clock."""

from __future__ import annotations

import uuid

import pytest

from esms_callbacks.engine.semaphore import LeaseSemaphore
from tests.helpers import T0


@pytest.fixture
def places(redis_client):
    key = f"test-places-{uuid.uuid4().hex}"
    yield LeaseSemaphore(redis_client, key, lease_s=10), key
    redis_client.delete(key)


def test_at_most_limit_holders_and_a_holder_renews_its_own_place(places):
    semaphore, _ = places
    first, second = semaphore.acquire(T0, 2), semaphore.acquire(T0, 2)
    assert first and second and first != second
    assert semaphore.acquire(T0, 2) is None  # full
    assert semaphore.acquire(T0 + 5, 2, token=first) == first  # renewing is not a new place
    assert semaphore.holders(T0 + 5) == 2


def test_a_place_frees_itself_when_its_lease_runs_out_or_it_is_released(places):
    semaphore, _ = places
    first = semaphore.acquire(T0, 1)
    assert first and semaphore.acquire(T0 + 9, 1) is None
    assert semaphore.acquire(T0 + 10.001, 1)  # the first holder died: its lease expired
    semaphore.release(first)  # releasing a place already lost changes nothing
    assert semaphore.holders(T0 + 10.001) == 1


def test_a_lower_limit_lets_holders_keep_their_places_but_takes_no_newcomer(places):
    semaphore, _ = places
    tokens = [semaphore.acquire(T0, 3) for _ in range(3)]
    assert all(tokens)
    assert semaphore.acquire(T0 + 1, 1, token=tokens[2]) == tokens[2]  # kept
    assert semaphore.acquire(T0 + 1, 1) is None


def test_a_holder_whose_worker_is_stopping_gives_its_place_up(places, redis_client):
    semaphore, key = places
    stopping = f"{key}:stopping"
    token = semaphore.acquire(T0, 1, stopping_key=stopping)
    redis_client.set(stopping, 1, ex=60)
    try:
        assert semaphore.acquire(T0 + 1, 1, token=token, stopping_key=stopping) is None
        assert semaphore.holders(T0 + 1) == 0  # the place is free for another worker
    finally:
        redis_client.delete(stopping)
