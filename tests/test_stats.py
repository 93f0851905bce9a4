"""The account's counters and recent-requests log (engine/stats.py) against real Redis."""

from __future__ import annotations

import logging
import uuid

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.stats import RequestStats
from esms_callbacks.tuning import RECENT_KEEP_S
from tests.helpers import T0


@pytest.fixture
def stats(redis_client):
    keys = AccountKeys(f"test-stats-{uuid.uuid4().hex}")
    yield RequestStats(redis_client, keys), keys
    redis_client.delete(keys.stats, keys.recent)


def test_a_failed_request_is_counted_by_error_and_logged_as_recent(stats):
    counters, _ = stats
    # given two failed requests, one of them older than the log keeps
    counters.count_failure(100, "160", sent_at_s=T0, now_s=T0)
    counters.count_failure(40, "TransportError", sent_at_s=T0 + RECENT_KEEP_S + 1, now_s=T0 + 400)
    # expect both counted, and only the newer one in the recent log
    snapshot = counters.snapshot()
    assert snapshot.counters == {
        "requests": 2,
        "refs_asked": 140,
        "errors:160": 1,
        "errors:TransportError": 1,
    }
    assert counters.recent_requests(since_s=T0 - 1) == [40]
    assert counters.recent_requests(since_s=T0 + 401) == []


def test_gauges_stay_out_of_the_counters(stats, redis_client):
    counters, keys = stats
    assert counters.request_time_s() is None
    assert counters.snapshot().beat_release_at_s is None
    # given the drainers' average (written by the settle script) and beat's pulse
    redis_client.hset(keys.stats, mapping={"request_time_s": "0.120000", "events:sent": 3})
    counters.mark_beat_release(T0)
    # expect them read as numbers, apart from the counters
    snapshot = counters.snapshot()
    assert (snapshot.request_time_s, snapshot.beat_release_at_s) == (0.12, T0)
    assert snapshot.counters == {"events:sent": 3}
    assert counters.request_time_s() == 0.12


def test_counting_a_failure_never_raises_when_redis_is_away(caplog):
    # given a Redis nobody listens on
    away = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    counters = RequestStats(away, AccountKeys("test-stats-away"))
    # when a failure is counted: a warning, no exception (the failure's handling goes on)
    with caplog.at_level(logging.WARNING):
        counters.count_failure(10, "500", sent_at_s=T0, now_s=T0)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "could not update request counters"
    ]
