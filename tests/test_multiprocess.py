"""Several real `celery worker` processes sharing one account: the limit, the window, restarts.

The simulator runs in this process and logs when each request reached it, so spacing is
measured where "eSMS" receives the requests.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from esms_callbacks.cli.processes import Child, stop_all
from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.esms.window import Window
from esms_callbacks.simulator.remote import RemoteSimulator
from esms_callbacks.tasks import app, fetch_callbacks
from tests.helpers import (
    SIM_API_KEY,
    SIM_SECRET_KEY,
    account_for,
    drain_events,
    until_terminal,
    wait_until,
)
from tests.procs import remote_simulator, settings_env, start_beat, start_worker

pytestmark = pytest.mark.slow
OA = "1090257973118325189"


@pytest.fixture(scope="module")
def remote_sim() -> Iterator[RemoteSimulator]:
    """A simulator in its own process: receipt times free of this process's work."""
    with remote_simulator(SIM_API_KEY, SIM_SECRET_KEY, rate_interval_s=0.2, policy="sent") as sim:
        yield sim


@pytest.fixture
def procs(tmp_path) -> Iterator[list[Child]]:
    app.control.purge()  # leftovers of other tests must not reach these workers
    started: list[Child] = []
    yield started
    stop_all(started)


def submit_in_small_groups(ref_ids: list[str], size: int = 3) -> None:
    for start in range(0, len(ref_ids), size):
        fetch_callbacks.delay(ref_ids[start : start + size], OA)


def gaps_s(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(sorted(times))]


def test_three_workers_share_one_rate_limit_and_send_full_requests(
    make_settings, remote_sim, procs, tmp_path
):
    # given a backlog of 2,400 RefIds from 800 small submissions (as after a closed window)
    # No margin: on loopback only the limiter keeps requests apart where eSMS receives them
    settings = make_settings(
        rate_interval_s=0.2,
        rate_margin_s=0.0,
        drainers=4,
        release_every_s=0.5,
        base_url=remote_sim.base_url,
    )
    remote_sim.reset()
    backlog = Backlog(
        redis.Redis.from_url(settings.redis_url), AccountKeys(account_for(settings).key_id), 3600
    )
    ref_ids = [f"mp-{i:05d}" for i in range(2400)]
    for start in range(0, len(ref_ids), 3):
        backlog.park(OA, ref_ids[start : start + 3], time.time())

    # when three worker processes (2 pool processes each) and beat drain it, eSMS enforcing
    # 0.2 s between requests
    env = settings_env(settings)
    procs += [start_worker(f"w{i}", env, tmp_path) for i in range(3)]
    procs.append(start_beat(env, tmp_path))
    events = drain_events(
        settings.broker_url,
        settings.status_queue,
        want=2400,
        timeout_s=90,
        until=until_terminal(at_least=2400),
    )

    # expect every RefId terminal, no request refused, none closer than the interval at eSMS
    assert {e["ref_id"] for e in events if e["terminal"]} == set(ref_ids)
    requests = remote_sim.requests()
    gaps = sorted(gaps_s([r["received_at_s"] for r in requests]))
    assert {r["code"] for r in requests} == {100}, gaps[:5]
    assert gaps[0] >= 0.2, gaps[:5]
    # and the backlog left in 24 full requests
    assert [r["ref_count_sent"] for r in requests] == [100] * 24
    # and the work really was spread over several worker processes (a drain logs its summary
    # when it ends: let them end)
    stop_all(procs)
    busy = [p.name for p in procs if "drain: " in p.log]
    assert len(busy) >= 2, busy


@pytest.mark.serial  # a 3 s window, its first request within 2 s: run alone
def test_window_opening_a_few_seconds_in_releases_refs_promptly_and_closes_on_time(
    make_settings, remote_sim, procs, tmp_path, redis_client
):
    # given a window that opens 10 s from now (time to start the processes) and stays open
    # 3 s, in UTC+7
    zone = "Asia/Ho_Chi_Minh"
    opens_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)
    closes_at = opens_at + timedelta(seconds=3)
    spec = f"{opens_at.astimezone(Window.parse('always', zone).zone):%H:%M:%S}-" + (
        f"{closes_at.astimezone(Window.parse('always', zone).zone):%H:%M:%S}"
    )
    settings = make_settings(
        rate_interval_s=0.2,
        rate_margin_s=0.01,
        window=Window.parse(spec, zone),
        release_every_s=0.5,
        base_url=remote_sim.base_url,
    )
    remote_sim.reset()
    env = settings_env(settings)
    procs.append(start_worker("w0", env, tmp_path))
    procs.append(start_beat(env, tmp_path))

    # when 3,000 RefIds are submitted while it is still closed (more than 3 s can carry)
    ref_ids = [f"win-{i:05d}" for i in range(3000)]
    submit_in_small_groups(ref_ids, size=50)
    assert time.time() < opens_at.timestamp(), "setup took too long to test the opening"
    # Watching a stretch of time is the point: the window opening, closing, and 2 s past the
    # close in which no request may arrive.
    time.sleep(max(0.0, closes_at.timestamp() - time.time()) + 2.0)

    # expect nothing before it opened, the first request within 2 s of opening, none after close
    requests = remote_sim.requests()
    received = [r["received_at_s"] for r in requests]
    assert received, "no request was sent while the window was open"
    first_s, last_s = min(received) - opens_at.timestamp(), max(received) - opens_at.timestamp()
    assert first_s >= 0, f"a request {-first_s:.3f}s before the window opened"
    assert first_s < 2.0, f"first request {first_s:.3f}s after the window opened"
    assert last_s < 3.0, f"a request {last_s - 3:.3f}s after the window closed"
    # and what the window could not carry is still waiting, none lost
    backlog = Backlog(
        redis.Redis.from_url(settings.redis_url), AccountKeys(account_for(settings).key_id), 3600
    )
    waiting = sum(oa.waiting + oa.leased for oa in backlog.per_oa(time.time()))
    answered = sum(r["ref_count_sent"] for r in requests)
    assert {r["code"] for r in requests} == {100}
    assert all(r["ref_count_sent"] == 100 for r in requests)
    assert waiting + answered == 3000
    assert waiting > 0


def test_waiting_refs_survive_a_killed_worker_and_go_out_after_restart(
    make_settings, sim, procs, tmp_path
):
    # given a worker with the window closed
    closed = make_settings(window=Window.parse("00:00:00-00:00:01", "UTC"), window_guard_s=0.0)
    if closed.terms.window.is_open(datetime.now(UTC)):
        pytest.skip("ran in the one second the 'closed' window is open")
    worker = start_worker("closed", settings_env(closed), tmp_path)
    procs.append(worker)

    # when RefIds are parked, and the worker is killed outright
    ref_ids = [f"surv-{i:04d}" for i in range(150)]
    fetch_callbacks.delay(ref_ids, OA)
    worker.wait_for("accepted 150 RefIds")
    worker.kill()
    assert sim.requests == []

    # and a new worker starts with the window open
    procs.append(
        start_worker(
            "open",
            settings_env(
                closed.with_changes(release_every_s=0.5).with_terms(window=Window.parse("always"))
            ),
            tmp_path,
        )
    )
    procs.append(
        start_beat(
            settings_env(
                closed.with_changes(release_every_s=0.5).with_terms(window=Window.parse("always"))
            ),
            tmp_path,
        )
    )

    # expect every RefId to reach its terminal event
    events = drain_events(closed.broker_url, closed.status_queue, want=150, timeout_s=60)
    assert {e["ref_id"] for e in events if e["terminal"]} == set(ref_ids)


def test_a_warm_shutdown_stops_a_drain_within_seconds_and_loses_nothing(
    make_settings, remote_sim, procs, tmp_path, redis_client
):
    # given a worker draining a long backlog at one request a second (a 60 s drain budget)
    settings = make_settings(
        rate_interval_s=1.0, rate_margin_s=0.0, base_url=remote_sim.base_url, drainers=1
    )
    remote_sim.reset()
    remote_sim.configure(rate_interval_s=1.0)
    try:
        worker = start_worker("warm", settings_env(settings), tmp_path, concurrency=2)
        procs.append(worker)
        ref_ids = [f"warm-{i:05d}" for i in range(3000)]
        fetch_callbacks.delay(ref_ids, OA)
        wait_until(lambda: len(remote_sim.requests()) >= 3, 30, "the drain did not start")

        # when it is told to stop (SIGTERM, as a supervisor does on a deploy)
        stopping = time.monotonic()
        worker.popen.terminate()
        worker.popen.wait(timeout=45)
        took_s = time.monotonic() - stopping
    finally:
        remote_sim.configure(rate_interval_s=0.0)

    # expect it gone within seconds, not after the drain's 60 s budget, with every RefId
    # either answered or waiting again (none left leased)
    assert took_s < 15, f"warm shutdown took {took_s:.1f}s"
    backlog = Backlog(redis_client, AccountKeys(account_for(settings).key_id), 3600)
    (oa,) = backlog.per_oa(time.time())
    answered = sum(r["ref_count_sent"] for r in remote_sim.requests() if r["code"] == 100)
    assert oa.leased == 0 and oa.waiting + answered == 3000
