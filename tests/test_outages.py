"""Redis for the waiting RefIds unreachable for a while: submissions wait and then go through."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import pytest
import redis

from esms_callbacks.tasks import fetch_callbacks
from tests.helpers import drain_events, in_process_worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_submissions_survive_redis_being_down_and_go_out_when_it_is_back(
    make_settings, sim, tmp_path
):
    # given a worker whose waiting-RefId Redis is down (the broker is up)
    port = free_port()
    settings = make_settings(redis_url=f"redis://127.0.0.1:{port}/0")
    server = None
    try:
        with in_process_worker(settings):
            # when RefIds are submitted, and Redis comes back two seconds later
            fetch_callbacks.delay(["outage-1", "outage-2"], "oa1")
            time.sleep(2.0)
            assert sim.requests == []
            server = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp_path),
                ],
                stdout=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    redis.Redis(port=port).ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)

            # expect the submission retried until it was parked, then fetched
            events = drain_events(settings.broker_url, settings.status_queue, want=2, timeout_s=30)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
    assert sorted(e["ref_id"] for e in events if e["terminal"]) == ["outage-1", "outage-2"]
