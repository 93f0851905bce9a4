"""Real `esms-callbacks receive` processes behind a load balancer, one killed mid-load.

Given two receivers sharing one account and pushes spread over both, with the first killed
(SIGKILL) part way, a push that got no 200 tried again on the other as eSMS retries: expect
every pushed RefId to end with exactly one terminal event (duplicates of the same event_id
allowed, as the contract says), the killed receiver's pending pushes applied by the other.
"""

from __future__ import annotations

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.harness import receiver_command
from esms_callbacks.cli.processes import Child, free_port, stop_all
from esms_callbacks.runtime import Runtime
from tests.helpers import drain_events, runtime_of, wait_until
from tests.procs import settings_env
from tests.receiving import TOKEN, get, push_params

# serial: the first receiver must be seen holding work before the second reclaims it (1 s)
pytestmark = [pytest.mark.slow, pytest.mark.serial]
OA = "1397492183140006179"
PUSHES = 600


def start_receiver(name: str, env: dict[str, str], log_dir: Path) -> tuple[Child, str]:
    port = free_port()
    receiver = Child(name, receiver_command(port), env, log_dir / f"{name}.log")
    receiver.wait_ready(timeout_s=30)
    return receiver, f"http://127.0.0.1:{port}/esms/push/{TOKEN}"


def test_receivers_share_the_work_and_a_killed_one_loses_nothing_it_acknowledged(
    make_settings, tmp_path
):
    # (a 1 s HTTP timeout: the RefIds the killed one claimed come back when their lease, 2 x
    # that + 5 s, runs out, and the test waits for that; receivers never call eSMS)
    settings = make_settings(http_timeout_s=1.0)
    env = settings_env(settings, ESMS_PUSH_TOKEN=TOKEN, ESMS_PUSH_RECLAIM_AFTER="1")
    runtime = runtime_of(settings)
    refs = [f"p{i}" for i in range(PUSHES)]
    runtime.backlog.park(OA, refs[: PUSHES // 2], time.time())  # half were submitted
    # The first receiver's broker is away, so whatever it takes stays pending in its name.
    stalled = {**env, "CELERY_BROKER_URL": "redis://127.0.0.1:1/0"}
    first, first_url = start_receiver("receiver-1", stalled, tmp_path)
    second, second_url = start_receiver("receiver-2", env, tmp_path)
    acknowledged_by: dict[str, str] = {}
    try:

        def deliver(i: int) -> None:
            # A load balancer alternates; a push that got no 200 is tried again on the other.
            urls = [first_url, second_url] if i % 2 else [second_url, first_url]
            for attempt in range(10):
                url = urls[attempt % 2]
                try:
                    if get(url, push_params(refs[i], OA)).status == 200:
                        acknowledged_by[refs[i]] = url
                        return
                except OSError:
                    pass  # connection refused or reset: the killed receiver
                time.sleep(0.05)  # a retrying sender's pause, not a wait for something

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(deliver, i) for i in range(PUSHES)]
            wait_until(lambda: len(acknowledged_by) >= PUSHES // 3, 60, "a third delivered")
            wait_until(lambda: pending_of(runtime, first.popen.pid) > 0, 30, "work held by it")
            first.kill()  # mid-load: requests in flight, entries it took unapplied
            for future in futures:
                future.result(timeout=120)
        assert len(acknowledged_by) == PUSHES
        assert first_url in acknowledged_by.values()

        events = drain_events(
            settings.broker_url,
            settings.status_queue,
            PUSHES,
            timeout_s=90,
            until=lambda got: {e["ref_id"] for e in got if e["terminal"]} >= set(refs),
        )
    finally:
        stop_all([first, second])
    terminal_ids: defaultdict[str, set[str]] = defaultdict(set)
    for event in events:
        if event["terminal"]:
            terminal_ids[event["ref_id"]].add(event["event_id"])
    assert {ref: len(terminal_ids[ref]) for ref in refs} == dict.fromkeys(refs, 1)
    assert {e["source"] for e in events} == {"push"}
    assert runtime.backlog.per_oa(time.time()) == []


def pending_of(runtime: Runtime, pid: int) -> int:
    """Inbox entries the receiver process `pid` took and has not acknowledged (its consumer
    is named host-pid-random)."""
    consumers = runtime.redis.xinfo_consumers(runtime.keys.pushes, "appliers")
    return sum(int(c["pending"]) for c in consumers if f"-{pid}-" in c["name"].decode())
