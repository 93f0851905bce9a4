"""The global limiter against real Redis: spacing on the Redis clock, window, no busy-polling."""

from __future__ import annotations

import itertools
import threading
import time
import uuid

import pytest
import redis

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.limiter import Commit, RateLimiter
from esms_callbacks.engine.redis_time import RedisTimeBounds
from esms_callbacks.tuning import (
    COMMIT_AHEAD_S,
    MARGIN_HALF_LIFE_S,
    MARGIN_STEP_S,
    STRICTEST_KEPT_S,
)

# Millisecond bounds between one call and the next: run alone (make test's serial pass).
pytestmark = pytest.mark.serial


def make_limiter(
    client: redis.Redis, spacing_s: float, account: str = "", write_timeout_s: float = 0.25
) -> RateLimiter:
    k = AccountKeys(account or f"t-{uuid.uuid4().hex}")
    return RateLimiter(
        client,
        (k.rate, k.paused, k.health),
        spacing_s,
        margin_s=0.0,
        write_timeout_s=write_timeout_s,
    )


def redis_now_s(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1e6


def backdate_last_send(client: redis.Redis, account: str, by_s: float) -> int:
    """Move the account's last send (and its write, if still awaited) `by_s` into the past on
    the limiter's record: Redis time gone by without sleeping (the limiter keeps time on the
    Redis server's clock, which a test cannot pass in). Return the send's time as recorded."""
    rate, by_us = AccountKeys(account).rate, int(by_s * 1e6)
    if client.hexists(rate, "sending_us"):
        client.hincrby(rate, "sending_us", -by_us)
    return int(client.hincrby(rate, "last_us", -by_us))


def send_through(limiter: RateLimiter, client: redis.Redis, sent_at: list[float]) -> int:
    """Reserve, sleep until the slot, commit; return how many Redis calls it took."""
    calls = 1
    wait_s = limiter.reserve()
    assert wait_s is not None
    # Sleeps, not conditions: sleeping for the waits the limiter gives, on the real Redis
    # clock, is what a drainer does and what this measures (spacing, calls per send).
    time.sleep(wait_s)
    while not (commit := limiter.commit()).go:
        calls += 1
        time.sleep(commit.wait_s)
    limiter.mark_sent(commit.at_us)  # as the drainer does once the request is written
    calls += 1
    sent_at.append(commit.at_s)  # the send's time as the limiter recorded it
    return calls


def test_requests_from_many_threads_are_spaced_on_the_redis_clock(redis_client):
    # given four senders sharing one account's limiter at 50 ms
    account = f"t-{uuid.uuid4().hex}"
    spacing_s = 0.05
    sent_at: list[float] = []
    calls: list[int] = []

    def sender() -> None:
        limiter = make_limiter(
            redis.Redis(connection_pool=redis_client.connection_pool), spacing_s, account
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
    limiter = make_limiter(redis_client, 1.0)
    assert limiter.reserve() == 0.0
    now_s = redis_now_s(redis_client)
    # when the window closes in half a second
    # expect no slot, and nothing reserved (a later reservation without a limit still works)
    assert limiter.reserve(not_after_s=now_s + 0.5) is None
    wait_s = limiter.reserve(not_after_s=now_s + 5)
    assert wait_s is not None and 0.9 < wait_s <= 1.0


def test_commit_refuses_outside_the_window(redis_client):
    limiter = make_limiter(redis_client, 0.01)
    now_s = redis_now_s(redis_client)
    # a window that closed a second ago, and one that opens in a minute
    assert limiter.commit((now_s - 10, now_s - 1)).closed
    assert limiter.commit((now_s + 60, now_s + 120)).closed
    # an open one lets the request go
    assert limiter.commit((now_s - 1, now_s + 60)).go


def test_commit_waits_for_a_late_previous_send(redis_client):
    # given a send committed just now, and in its socket
    limiter = make_limiter(redis_client, 0.5)
    first = limiter.commit()
    assert first.go
    limiter.mark_sent(first.at_us)
    # when the next one commits at once (its holder overslept nothing: it is simply early)
    commit = limiter.commit()
    # expect it told to wait the rest of the spacing
    assert not commit.go and not commit.closed
    assert 0.4 < commit.wait_s <= 0.5


def test_a_handed_back_slot_goes_to_the_next_reserver(redis_client):
    # given a send just committed and one waiter holding the next slot, a spacing away
    limiter = make_limiter(redis_client, 1.0)
    assert limiter.commit().go
    first_wait_s = limiter.reserve()
    assert first_wait_s is not None and 0.9 < first_wait_s <= 1.0
    # when that waiter finds nothing to send and hands its slot back
    limiter.hand_back()
    # expect the next reserver to get that same slot, not the one after it
    wait_s = limiter.reserve()
    assert wait_s is not None and wait_s <= first_wait_s


def test_a_hand_back_never_brings_a_slot_closer_than_the_spacing(redis_client):
    # given a send just committed and nobody waiting
    limiter = make_limiter(redis_client, 1.0)
    assert limiter.commit().go
    # when slots are handed back that nobody reserved
    limiter.hand_back()
    limiter.hand_back()
    # expect the next slot still a spacing after the send
    wait_s = limiter.reserve()
    assert wait_s is not None and wait_s > 0.9


def test_commit_refuses_a_reserved_slot_once_the_account_is_paused(redis_client):
    # given a waiter that reserved its slot before eSMS refused the account
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.001, account)
    assert limiter.reserve() is not None
    redis_client.set(AccountKeys(account).paused, "Code 101", px=60_000)
    # when it commits: refused as paused, and no send recorded
    commit = limiter.commit()
    assert (commit.go, commit.paused, commit.refused) == (False, True, "account paused")
    assert redis_client.hget(AccountKeys(account).rate, "last_us") is None


def test_commit_holds_back_while_the_breaker_is_open_then_lets_one_probe_through(redis_client):
    account = f"t-{uuid.uuid4().hex}"
    health = AccountKeys(account).health
    limiter = make_limiter(redis_client, 0.001, account)
    now_us = int(redis_now_s(redis_client) * 1e6)
    # given a breaker open for another 30 s
    redis_client.hset(health, mapping={"failures": 3, "open_until_us": now_us + 30_000_000})
    commit = limiter.commit()
    assert commit.backing_off and commit.refused and 29 < commit.wait_s <= 30
    assert commit.failures == 3
    # when its time has passed (half-open): one probe goes, the next is held behind it
    redis_client.hset(health, "open_until_us", now_us - 1)
    probe = limiter.commit()
    assert probe.go and probe.failures == 3
    limiter.mark_sent(probe.at_us)
    # the probe left a second ago: past the 1 ms spacing, so only the probe can hold it back
    backdate_last_send(redis_client, account, 1.0)
    held = limiter.commit()
    assert held.backing_off and not held.go
    # and once the probe succeeded (the breaker closed), requests go at the rate again
    redis_client.delete(health)
    assert make_limiter(redis_client, 0.001, account).commit().go  # another process


def test_a_160_widens_the_spacing_and_the_widening_fades(redis_client):
    # given a limiter at 100 ms with no margin, and a send just committed
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.1, account)
    assert limiter.commit().go
    # when eSMS answers 160 twice
    first_s = limiter.widen_margin()
    second_s = limiter.widen_margin()
    # expect the extra margin to grow (at least one step, then doubling) and to apply
    assert MARGIN_STEP_S <= first_s < second_s <= 0.1
    wait_s = limiter.reserve()
    assert wait_s is not None and wait_s > 0.1 + second_s - 0.01
    # and expect it to fade: one half-life later a further 160 doubles half of it
    redis_client.hincrby(AccountKeys(account).rate, "extra_at_us", -int(MARGIN_HALF_LIFE_S * 1e6))
    faded_s = second_s / 2
    assert limiter.widen_margin() == pytest.approx(faded_s * 2 + MARGIN_STEP_S, abs=0.0005)


def test_the_spacing_counts_from_when_the_request_left(redis_client):
    # given a send committed 300 ms ago, whose worker only now wrote it (a busy CPU)
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.5, account)
    commit = limiter.commit()
    assert commit.go
    committed_at_us = backdate_last_send(redis_client, account, 0.3)
    # when it says the request is in the socket
    limiter.mark_sent(committed_at_us)
    # expect the next request to wait a whole spacing from then, not from the commit
    assert limiter.commit().wait_s > 0.45


def test_a_late_mark_never_moves_a_later_send(redis_client):
    # given a send committed, and then another one (the first one's mark comes late)
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.001, account, write_timeout_s=0.02)
    first = limiter.commit()
    # committed 30 ms ago: the first one's write is overdue, the second goes without it
    first_at_us = backdate_last_send(redis_client, account, 0.03)
    other = make_limiter(redis_client, 0.001, account, write_timeout_s=0.02)  # another process
    second = other.commit()
    assert first.go and second.go
    # when the first one's mark arrives
    limiter.mark_sent(first_at_us)
    # expect the second send to stay the last one recorded
    last_us = int(redis_client.hget(AccountKeys(account).rate, "last_us"))
    assert last_us == second.at_us


def test_the_strictest_spacing_of_any_host_wins(redis_client):
    # given two hosts of one account during a rolling change: 0.5 s and 0.05 s
    account = f"t-{uuid.uuid4().hex}"
    strict, loose = (
        make_limiter(redis_client, 0.5, account),
        make_limiter(redis_client, 0.05, account),
    )
    sent = strict.commit()
    assert sent.go
    strict.mark_sent(sent.at_us)
    # when the loose host commits next: it waits for the strict spacing
    assert 0.4 < loose.commit().wait_s <= 0.5
    wait_s = loose.reserve()
    assert wait_s is not None and wait_s > 0.4
    # and once the strict host has not been seen for STRICTEST_KEPT_S, its own spacing holds
    rate = AccountKeys(account).rate
    redis_client.hincrby(rate, "strict_at_us", -int((STRICTEST_KEPT_S + 1) * 1e6))
    redis_client.hset(rate, mapping={"last_us": 0, "tat_us": 0})
    sent = loose.commit()
    assert sent.go
    loose.mark_sent(sent.at_us)
    assert 0.04 < loose.commit().wait_s <= 0.05


def test_rate_state_far_in_the_future_is_repaired_not_slept_on(redis_client):
    # given rate state an hour ahead of the Redis clock (it went back in a failover)
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.05, account)
    hour_ahead_us = int((redis_now_s(redis_client) + 3600) * 1e6)
    rate = AccountKeys(account).rate
    redis_client.hset(rate, mapping={"tat_us": hour_ahead_us, "last_us": hour_ahead_us})
    # when a drainer reserves and commits: expect no hour-long sleep, and a send
    wait_s = limiter.reserve()
    assert wait_s is not None and wait_s <= 0.05
    commit = limiter.commit()
    assert commit.go or commit.wait_s <= 0.05


def test_the_worker_clock_ignores_steps_of_the_host_clock(redis_client, monkeypatch):
    from esms_callbacks.engine.clock import RedisClock

    clock = RedisClock(redis_client)
    before_s = clock.now_s()
    # when the host's wall clock steps an hour back
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)
    # expect the worker's clock (the Redis clock, carried on monotonically) unmoved
    assert abs(clock.now_s() - before_s) < 1
    assert abs(clock.now_s() - redis_now_s(redis_client)) < 1


def test_a_backoff_further_ahead_than_any_backoff_can_be_is_not_waited_for(redis_client):
    # given a breaker "open" for another day (the Redis clock went back after it opened)
    account = f"t-{uuid.uuid4().hex}"
    k = AccountKeys(account)
    limiter = RateLimiter(
        redis_client, (k.rate, k.paused, k.health), 0.001, 0.0, 60.0, max_backoff_s=60.0
    )
    day_ahead_us = int((redis_now_s(redis_client) + 86400) * 1e6)
    redis_client.hset(k.health, mapping={"failures": 9, "open_until_us": day_ahead_us})
    # when a request commits: expect one probe to go, not a day's wait
    assert limiter.commit().go


def test_a_request_committed_and_not_yet_written_holds_the_next_back(redis_client):
    # given a send committed whose worker has not written it yet (a stalled CPU)
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.05, account)
    first = limiter.commit()
    assert first.go
    first_at_us = backdate_last_send(redis_client, account, 0.06)  # more than a spacing ago
    # when the next one commits, expect it to wait for the first one's write, not overtake it
    held = limiter.commit()
    assert not held.go and 0 < held.wait_s <= 0.002
    # and once the first is in its socket, a whole spacing from that moment
    limiter.mark_sent(first_at_us)
    after = limiter.commit()
    assert not after.go and after.wait_s > 0.04


def test_a_write_that_never_comes_holds_the_next_back_only_briefly(redis_client):
    # given a send committed whose write failed (no mark will come)
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.001, account, write_timeout_s=0.03)
    assert limiter.commit().go
    assert not limiter.commit().go
    # expect the next (another process's) to go once the write is overdue (committed 40 ms ago)
    backdate_last_send(redis_client, account, 0.04)
    assert make_limiter(redis_client, 0.001, account, write_timeout_s=0.03).commit().go


def commit_5ms_early(client: redis.Redis) -> tuple[RateLimiter, Commit]:
    """A limiter at 50 ms whose last send was in its socket 45 ms ago (on the Redis clock),
    and the next commit, made 5 ms before the spacing allows."""
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(client, 0.05, account)
    first = limiter.commit()
    limiter.mark_sent(first.at_us)
    backdate_last_send(client, account, 0.045)
    other = make_limiter(client, 0.05, account)  # the next commit: another process's
    return other, other.commit()


def test_a_commit_just_before_its_moment_is_granted_for_that_moment(redis_client):
    # given a send 50 ms apart from the next, in its socket 45 ms ago
    # when the next commits 5 ms before the spacing allows
    _, commit = commit_5ms_early(redis_client)
    # expect it granted for that moment, and told to wait for it
    assert commit.go and 0 < commit.wait_s <= COMMIT_AHEAD_S
    assert commit.at_s > redis_now_s(redis_client)
    # and waiting `wait_s` from then lands no earlier than the moment on the Redis clock
    time.sleep(commit.wait_s)
    assert redis_now_s(redis_client) >= commit.at_s


def test_a_waiter_too_early_comes_back_shortly_before_its_moment(redis_client):
    # given a send in its socket just now, at 100 ms
    limiter = make_limiter(redis_client, 0.1)
    first = limiter.commit()
    limiter.mark_sent(first.at_us)
    # when the next commits at once: expect no grant, and a wait ending half of
    # COMMIT_AHEAD_S before the moment, so that its next commit is granted ahead of it
    commit = limiter.commit()
    assert not commit.go
    assert 0.1 - COMMIT_AHEAD_S < commit.wait_s <= 0.1 - COMMIT_AHEAD_S / 2


def test_the_next_waits_a_spacing_after_a_granted_moment_not_yet_written(redis_client):
    # given a send granted for a moment a few ms ahead, not written yet
    limiter, granted = commit_5ms_early(redis_client)
    assert granted.go and granted.at_s > redis_now_s(redis_client)
    # when another commits meanwhile
    held = limiter.commit()
    # expect it held until shortly before a spacing after that moment, not polling
    assert not held.go
    until_s = redis_now_s(redis_client) + held.wait_s
    assert granted.at_s + 0.05 - COMMIT_AHEAD_S <= until_s <= granted.at_s + 0.05


def test_a_write_is_dated_by_this_hosts_bound_on_the_redis_clock(redis_client):
    # given a limiter whose view of the Redis clock is 5 ms behind it (as if its mark reached
    # Redis 5 ms after the write), and a send committed 10 ms ago
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.001, account)
    commit = limiter.commit()
    committed_at_us = backdate_last_send(redis_client, account, 0.01)
    limiter.redis_time = RedisTimeBounds()
    now_s = time.monotonic()
    limiter.redis_time.sample(redis_now_s(redis_client) - 0.005, now_s, now_s)
    # when it marks the write
    limiter.mark_sent(committed_at_us)
    # expect the write dated by its bound (5 ms before Redis's own reading), never before
    # the moment it was committed for
    last_s = int(redis_client.hget(AccountKeys(account).rate, "last_us")) / 1e6
    assert commit.go
    assert committed_at_us / 1e6 <= last_s <= redis_now_s(redis_client) - 0.004


def test_an_exact_sleep_never_wakes_before_its_moment(redis_client):
    from esms_callbacks.engine.clock import RedisClock
    from esms_callbacks.tuning import SPIN_S

    clock = RedisClock(redis_client)
    # sleeps shorter and longer than the spun part, as a granted request waits for its moment
    for seconds in (0.0, SPIN_S / 4, SPIN_S, SPIN_S * 3, 0.0123):
        for _ in range(5):
            started_s = time.monotonic()
            clock.sleep_exactly(seconds)
            assert time.monotonic() - started_s >= seconds


def test_a_redis_clock_jumping_ahead_never_brings_this_process_s_sends_closer(redis_client):
    # given a request this process just sent at 100 ms
    account = f"t-{uuid.uuid4().hex}"
    limiter = make_limiter(redis_client, 0.1, account)
    first = limiter.commit()
    assert first.go
    limiter.mark_sent(first.at_us)
    sent_s = time.monotonic()
    # when the Redis clock jumps a second ahead (a failover to a host whose clock is ahead):
    # on its record, the last send is a second old
    backdate_last_send(redis_client, account, 1.0)
    # expect this process to hold its next request for the rest of its own spacing
    held = limiter.commit()
    assert not held.go and not held.refused
    assert 0.05 < held.wait_s <= 0.1
    # and to send again, no sooner than a spacing after the first on its own clock
    while not (commit := limiter.commit()).go:
        time.sleep(commit.wait_s)
    assert time.monotonic() + commit.wait_s - sent_s >= 0.1
