"""Bounds on the Redis clock from readings taken within a round trip (times passed in)."""

from __future__ import annotations

import pytest

from esms_callbacks.engine.redis_time import RedisTimeBounds
from esms_callbacks.tuning import CLOCK_DRIFT_PER_S, CLOCK_SAMPLE_MAX_AGE_S

OFFSET_S = 1_700_000_000.0  # Redis time minus local monotonic time, as the tests set it up


def reading(bounds: RedisTimeBounds, sent_s: float, redis_after_s: float, reply_s: float) -> None:
    """A call sent at local `sent_s`, read by Redis `redis_after_s` later, answered
    `reply_s` after that."""
    bounds.sample(OFFSET_S + sent_s + redis_after_s, sent_s, sent_s + redis_after_s + reply_s)


def test_nothing_is_known_before_a_reading():
    bounds = RedisTimeBounds()
    assert bounds.local_deadline_s(OFFSET_S + 5, 5) is None
    assert bounds.redis_latest_s(5) is None


def test_the_tightest_readings_bound_the_clock_on_the_safe_side():
    # given a reading whose reply took 2 ms, then a fast one (0.2 ms there, 0.1 ms back), then
    # a slow one (3 ms there, 1.5 ms back)
    bounds = RedisTimeBounds()
    reading(bounds, 10.0, redis_after_s=0.0005, reply_s=0.002)
    reading(bounds, 10.01, redis_after_s=0.0002, reply_s=0.0001)
    reading(bounds, 10.02, redis_after_s=0.003, reply_s=0.0015)
    now_s = 10.03

    # when asked when Redis reaches a moment 5 ms ahead
    deadline_s = bounds.local_deadline_s(OFFSET_S + now_s + 0.005, now_s)

    # expect a local moment no earlier than the true one, late by about the fastest reply
    # (the second reading's 0.1 ms), not the latest reading's 1.5 ms
    assert deadline_s is not None
    assert 0 <= deadline_s - (now_s + 0.005) <= 0.0001 + 0.0001
    # and a local moment dated on the Redis clock no earlier than it truly was, late by about
    # the fastest request (0.2 ms), not the latest one's 3 ms
    latest_s = bounds.redis_latest_s(now_s)
    assert latest_s is not None
    assert 0 <= latest_s - (OFFSET_S + now_s) <= 0.0002 + 0.0001


def test_a_bound_loosens_with_age_for_drift():
    # given one tight reading, half a second ago
    bounds = RedisTimeBounds()
    reading(bounds, 0.0, redis_after_s=0.0, reply_s=0.0)
    # expect its bounds widened by the drift two hosts' clocks may have had since
    deadline_s = bounds.local_deadline_s(OFFSET_S + 0.5, 0.5)
    latest_s = bounds.redis_latest_s(0.5)
    assert deadline_s == pytest.approx(0.5 + 0.5 * CLOCK_DRIFT_PER_S)
    assert latest_s == pytest.approx(OFFSET_S + 0.5 + 0.5 * CLOCK_DRIFT_PER_S)


def test_a_bound_older_than_max_age_gives_way_to_any_new_reading():
    # given a tight reading, and a slow one (1 ms there, 2 ms back) a little over
    # CLOCK_SAMPLE_MAX_AGE_S later, when the old one, loosened for drift, would still be the tighter
    bounds = RedisTimeBounds()
    reading(bounds, 0.0, redis_after_s=0.0, reply_s=0.0)
    later_s = CLOCK_SAMPLE_MAX_AGE_S * 1.01
    reading(bounds, later_s, redis_after_s=0.001, reply_s=0.002)
    assert later_s * CLOCK_DRIFT_PER_S < 0.002  # (the old one would have won on tightness)
    # expect the new reading's bounds, not the old one's
    now_s = later_s + 0.003
    deadline_s = bounds.local_deadline_s(OFFSET_S + now_s, now_s)
    assert deadline_s == pytest.approx(now_s + 0.002)


def test_a_reading_that_contradicts_the_bounds_starts_them_again():
    # given tight bounds, then the Redis clock stepped 2 s back (a failover)
    bounds = RedisTimeBounds()
    reading(bounds, 1.0, redis_after_s=0.0001, reply_s=0.0001)
    bounds.sample(OFFSET_S - 2.0 + 1.5, 1.5 - 0.001, 1.5 + 0.001)
    # expect the bounds to follow the new clock, not the old one
    deadline_s = bounds.local_deadline_s(OFFSET_S - 2.0 + 1.6, 1.6)
    assert deadline_s is not None and 1.6 <= deadline_s <= 1.6 + 0.0011
