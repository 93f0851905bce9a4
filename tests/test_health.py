"""The account's health against real Redis. The circuit breaker: sporadic failures cost
themselves, a streak backs off exponentially up to a cap, one success ends it. The pause: a
reason with a TTL, read with the breaker in one round trip."""

from __future__ import annotations

import uuid

import pytest

from esms_callbacks.engine.health import AccountPause, Breaker
from esms_callbacks.engine.keys import AccountKeys
from tests.helpers import runtime_of


@pytest.fixture
def breaker(redis_client):
    key = AccountKeys(f"t-{uuid.uuid4().hex}").health
    return Breaker(redis_client, key, trip_after=3, base_s=2.0, max_s=60.0)


@pytest.fixture
def health(redis_client):
    keys = AccountKeys(f"t-{uuid.uuid4().hex}")
    breaker = Breaker(redis_client, keys.health, trip_after=1, base_s=30.0, max_s=60.0)
    yield AccountPause(redis_client, keys.paused, keys.health), breaker, keys
    redis_client.delete(keys.paused, keys.health)


def test_sporadic_failures_do_not_hold_the_account(breaker):
    # given failures with successes between them
    for _ in range(5):
        assert breaker.record_failure().wait_s == 0
        assert breaker.record_failure().wait_s == 0
        breaker.record_success()
    # expect no backoff at all: each failure cost only itself


def test_a_streak_backs_off_doubling_up_to_the_cap(breaker):
    # given failures in a row
    waits = [breaker.record_failure().wait_s for _ in range(10)]
    # expect nothing for the first two, then 2, 4, 8, 16, 32 s, then the 60 s cap
    assert waits[:2] == [0, 0]
    assert waits[2:7] == pytest.approx([2, 4, 8, 16, 32], abs=0.01)
    assert waits[7:] == pytest.approx([60, 60, 60], abs=0.01)
    assert breaker.state()["failures_in_a_row"] == 10


def test_one_success_ends_the_backoff(breaker):
    for _ in range(6):
        breaker.record_failure()
    breaker.record_success()
    assert breaker.record_failure().wait_s == 0
    assert breaker.state()["open_until_s"] == 0


def test_a_hold_opens_the_breaker_on_a_first_failure(breaker):
    # given a first failure that asks for a hold (eSMS said 160)
    failure = breaker.record_failure(hold_s=1.0)
    # expect the account held for that long, though the streak is short
    assert failure.in_a_row == 1 and failure.wait_s == pytest.approx(1.0, abs=0.01)


def test_beat_starts_no_drainers_while_the_account_is_held(make_settings):

    runtime = runtime_of(make_settings(breaker_after=2, retry_base_s=30.0))
    assert runtime.pause.blocked() == ""
    runtime.breaker.record_failure()
    assert runtime.pause.blocked() == ""  # one failure holds nothing
    runtime.breaker.record_failure()
    assert runtime.pause.blocked() == "backing off after failures"
    runtime.breaker.record_success()
    runtime.redis.set(runtime.keys.paused, "Code 101", px=60_000)
    assert runtime.pause.blocked() == "account paused"


def test_a_pause_keeps_its_reason_for_its_time_then_ends_by_itself(health, redis_client):
    pause, _, keys = health
    assert pause.reason() is None
    # when eSMS refuses the account
    pause.pause("eSMS answered Code 101 (wrong ApiKey or SecretKey): 'Sai ApiKey'", 300)
    # expect the reason for status, and a TTL of the pause (it ends without an operator)
    assert pause.reason() == "eSMS answered Code 101 (wrong ApiKey or SecretKey): 'Sai ApiKey'"
    assert 299_000 < redis_client.pttl(keys.paused) <= 300_000


def test_blocked_names_the_pause_before_the_breaker_and_nothing_when_clear(health):
    pause, breaker, _ = health
    assert pause.blocked() == ""
    breaker.record_failure()  # trips at once here: open for 30 s
    assert pause.blocked() == "backing off after failures"
    pause.pause("Code 103", 60)
    assert pause.blocked() == "account paused"
    breaker.record_success()
    assert pause.blocked() == "account paused"
