"""The broker (and Redis) restarting under a worker in the middle of a task: it reconnects and
carries on (see tasks/broker_fix.py), and a producer gets a clear error while the broker is
down instead of a silent drop."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest
from kombu.exceptions import OperationalError

from esms_callbacks.cli.processes import Child, stop_all
from examples.producer_by_name import submit
from tests.helpers import SIM_API_KEY, SIM_SECRET_KEY, drain_events, wait_until
from tests.procs import PrivateRedis, remote_simulator, settings_env, start_beat, start_worker

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
OA = "1090257973118325189"
SLOW_S = 6.0  # eSMS answers the request under way this late: the outage falls inside it


@pytest.fixture
def own_redis(tmp_path) -> Iterator[PrivateRedis]:
    """A redis-server of our own, with an append-only file so a restart keeps its data."""
    with PrivateRedis(tmp_path) as server:
        yield server


def test_workers_carry_on_after_the_broker_restarts_under_a_running_task(
    make_settings, own_redis, tmp_path, monkeypatch
):
    # Celery prefers CELERY_BROKER_URL from the environment over a broker argument
    monkeypatch.setenv("CELERY_BROKER_URL", own_redis.url)
    with remote_simulator(SIM_API_KEY, SIM_SECRET_KEY, rate_interval_s=0, policy="sent") as sim:
        # given a worker and beat on a broker (and Redis) of their own, the worker inside a
        # drain task (unacknowledged until it ends) whose request eSMS is slow to answer
        settings = make_settings(
            broker_url=own_redis.url,
            redis_url=own_redis.url,
            base_url=sim.base_url,
            http_timeout_s=10.0,
            release_every_s=0.5,
        )
        env = settings_env(settings)
        procs: list[Child] = []
        try:
            procs += [start_worker("w0", env, tmp_path), start_beat(env, tmp_path)]
            worker = procs[0]
            sim.add_fault("slow", delay_s=SLOW_S)
            submit(own_redis.url, [f"before-{i}" for i in range(50)], OA)
            wait_until(lambda: bool(sim.requests()), 30, "no request reached the simulator")

            # when the broker goes away mid-request: a producer gets an error, not a silent drop
            own_redis.stop()
            started = time.monotonic()
            with pytest.raises(OperationalError):
                submit(own_redis.url, ["lost?"], OA)
            assert time.monotonic() - started < 30
            # the outage lasts until the worker has noticed it
            worker.wait_for("Connection to broker lost", timeout_s=SLOW_S)
            own_redis.start()
            down_s = time.monotonic() - started

            # then the worker is still there, finishes what it held and takes new work
            submit(own_redis.url, [f"after-{i}" for i in range(50)], OA)
            wanted = {f"before-{i}" for i in range(50)} | {f"after-{i}" for i in range(50)}
            events = drain_events(
                own_redis.url,
                settings.status_queue,
                want=0,
                timeout_s=60,
                until=lambda got: {e["ref_id"] for e in got if e["terminal"]} >= wanted,
            )
            alive = worker.popen.poll() is None
        finally:
            stop_all(procs)

    assert down_s < SLOW_S, f"the outage ({down_s:.1f} s) outlasted the request: not mid-task"
    assert alive and "Unrecoverable" not in worker.log, worker.log[-3000:]
    assert "Connection to broker lost" in worker.log
    terminal = {e["ref_id"] for e in events if e["terminal"]}
    missing = sorted(wanted - terminal)
    assert not missing, f"{len(missing)} RefIds without an event, e.g. {missing[:5]}"
