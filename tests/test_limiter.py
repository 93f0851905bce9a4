"""The global limiter against real Redis: spacing on the Redis clock, window, no busy-polling."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import redis

from workers.keys import AccountKeys
from workers.limiter import RateLimiter


def redis_now_s(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def send_through(limiter: RateLimiter, client: redis.Redis, sent_at: list[float]) -> int:
    """Reserve, sleep until the slot, commit; return how many Redis calls it took."""
    calls = 1
    wait_s = limiter.reserve()
    assert wait_s is not None
    time.sleep(wait_s)
    while not (commit := limiter.commit()).go:
        calls += 1
        time.sleep(commit.wait_s)
    calls += 1
    sent_at.append(commit.at_s)  # the send's time as the limiter recorded it
    return calls


def test_requests_from_many_threads_are_spaced_on_the_redis_clock(redis_client):
    # given four senders sharing one account's limiter at 50 ms
    key = AccountKeys(f"t-{uuid.uuid4().hex}").rate
    spacing_s = 0.05
    sent_at: list[float] = []
    calls: list[int] = []

    def sender() -> None:
        limiter = RateLimiter(
            redis.Redis(connection_pool=redis_client.connection_pool), key, spacing_s
        )
        for _ in range(5):
            calls.append(send_through(limiter, redis_client, sent_at))

    # when each sends five requests at once
    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # expect no two sends closer than the spacing, and the 20 sends in about 20 slots
    sent_at.sort()
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert len(sent_at) == 20
    assert min(gaps) >= spacing_s - 1e-6  # exact on the Redis clock, to the microsecond
    assert sent_at[-1] - sent_at[0] < spacing_s * 19 * 2
    # and waiters sleep until their slot instead of polling: ~2 calls a send on average
    assert sum(calls) / len(calls) < 3


def test_a_slot_past_the_window_close_is_not_reserved(redis_client):
    # given a limiter whose next slot is 1 s away
    limiter = RateLimiter(redis_client, AccountKeys(f"t-{uuid.uuid4().hex}").rate, 1.0)
    assert limiter.reserve() == 0.0
    now_s = redis_now_s(redis_client)
    # when the window closes in half a second
    # expect no slot, and nothing reserved (a later reservation without a limit still works)
    assert limiter.reserve(not_after_s=now_s + 0.5) is None
    wait_s = limiter.reserve(not_after_s=now_s + 5)
    assert wait_s is not None and 0.9 < wait_s <= 1.0


def test_commit_refuses_outside_the_window(redis_client):
    limiter = RateLimiter(redis_client, AccountKeys(f"t-{uuid.uuid4().hex}").rate, 0.01)
    now_s = redis_now_s(redis_client)
    # a window that closed a second ago, and one that opens in a minute
    assert limiter.commit((now_s - 10, now_s - 1)).closed
    assert limiter.commit((now_s + 60, now_s + 120)).closed
    # an open one lets the request go
    assert limiter.commit((now_s - 1, now_s + 60)).go


def test_commit_waits_for_a_late_previous_send(redis_client):
    # given a send committed just now
    limiter = RateLimiter(redis_client, AccountKeys(f"t-{uuid.uuid4().hex}").rate, 0.5)
    assert limiter.commit().go
    # when the next one commits at once (its holder overslept nothing: it is simply early)
    commit = limiter.commit()
    # expect it told to wait the rest of the spacing
    assert not commit.go and not commit.closed
    assert 0.4 < commit.wait_s <= 0.5
