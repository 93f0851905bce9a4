"""Redis for the waiting RefIds unreachable for a while: submissions wait and then go through."""

from __future__ import annotations

import shutil
import time

import pytest

from esms_callbacks.tasks import fetch_callbacks
from tests.helpers import drain_events, in_process_worker
from tests.procs import PrivateRedis


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_submissions_survive_redis_being_down_and_go_out_when_it_is_back(
    make_settings, sim, tmp_path
):
    # given a worker whose waiting-RefId Redis is down (the broker is up)
    server = PrivateRedis(tmp_path)
    settings = make_settings(redis_url=server.url)
    try:
        with in_process_worker(settings):
            # when RefIds are submitted, and Redis comes back two seconds later
            fetch_callbacks.delay(["outage-1", "outage-2"], "oa1")
            time.sleep(2.0)  # the outage itself: the worker retries the submission meanwhile
            assert sim.requests == []
            server.start()

            # expect the submission retried until it was parked, then fetched
            events = drain_events(settings.broker_url, settings.status_queue, want=2, timeout_s=30)
    finally:
        server.stop()
    assert sorted(e["ref_id"] for e in events if e["terminal"]) == ["outage-1", "outage-2"]
