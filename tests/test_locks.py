"""engine/locks.py against real Redis: one holder at a time, and a holder releases only its
own lock (compare-and-delete in one script), even once its TTL ran out and another took it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from esms_callbacks.engine.locks import Lock


@pytest.fixture
def key(redis_client: redis.Redis) -> Iterator[str]:
    name = f"test-lock-{uuid.uuid4().hex}"
    yield name
    redis_client.delete(name)


def test_one_holder_at_a_time_and_the_lock_is_free_after_the_block(redis_client, key):
    with Lock(redis_client, key, ttl_s=10).acquire() as held:
        assert held
        with Lock(redis_client, key, ttl_s=10).acquire() as also:
            assert not also
        assert redis_client.exists(key)  # the one refused released nothing
    assert not redis_client.exists(key)
    with Lock(redis_client, key, ttl_s=10).acquire() as held:
        assert held


def test_a_holder_whose_lock_ran_out_leaves_the_next_holders_alone(redis_client, key):
    # given a holder that outlives its lock's TTL (a pulse longer than RELEASE_LOCK_S)
    late = Lock(redis_client, key, ttl_s=10).acquire()
    assert late.__enter__()
    redis_client.delete(key)  # its TTL ran out
    # when another takes the lock and the late holder then finishes
    with Lock(redis_client, key, ttl_s=10).acquire() as held:
        assert held
        late.__exit__(None, None, None)
        # expect the other's lock to stand
        assert redis_client.exists(key)
    assert not redis_client.exists(key)


def test_the_lock_has_a_ttl(redis_client, key):
    with Lock(redis_client, key, ttl_s=10).acquire():
        assert 0 < redis_client.pttl(key) <= 10_000


def test_a_long_holder_extends_its_lock_and_learns_when_it_lost_it(redis_client, key):
    lock = Lock(redis_client, key, ttl_s=10)
    assert not lock.extend()  # not held
    with lock.acquire() as held:
        assert held
        redis_client.pexpire(key, 100)  # nearly run out
        assert lock.extend()
        assert redis_client.pttl(key) > 9_000
        redis_client.set(key, "another holder's")  # it ran out and another took it
        assert not lock.extend()
        assert redis_client.pttl(key) == -1  # the other's left as it was
    assert redis_client.get(key) == b"another holder's"
