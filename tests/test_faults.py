"""Fault injection: real `celery worker` processes against a simulator switching faults on and
off, one worker killed in the middle of a request. At the end every RefId has exactly one
terminal state, and the eSMS secret appears nowhere an operator or attacker could read.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from esms_callbacks.cli.processes import Child, stop_all
from esms_callbacks.simulator.remote import RemoteSimulator
from esms_callbacks.tasks import app, fetch_callbacks
from tests.helpers import drain_events, until_terminal, wait_until
from tests.procs import remote_simulator, settings_env, start_beat, start_worker

pytestmark = pytest.mark.slow
OA = "1090257973118325189"
API_KEY = "FAULTTESTapikey7Q2W9E4R"
SECRET_KEY = "FAULTTESTsecret5Z8X1C6V"
VICTIM_SLOW_S = 8.0
PROBE = "test-probe"  # an event type of this test's own (see TaskEvents.caught_up)
FAULTS: list[tuple[str, dict[str, Any], int]] = [  # kind, parameters, requests in a row
    ("http500", {}, 3),
    ("badjson", {}, 2),
    ("html", {}, 1),
    ("reset", {}, 2),
    ("code", {"code": 160}, 2),
    ("code", {"code": 105}, 2),
    ("slow", {"delay_s": 4.0}, 1),  # longer than the 3 s HTTP timeout
]


@pytest.fixture(scope="module")
def faulty_sim() -> Iterator[RemoteSimulator]:
    with remote_simulator(API_KEY, SECRET_KEY, rate_interval_s=0.1, policy="mixed") as sim:
        yield sim


class TaskEvents:
    """Capture Celery task events (what Flower sees) in a background thread. `caught_up()`
    returns once every event published before it was called has been seen."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = defaultdict(int)
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def _run(self) -> None:
        with app.connection() as conn:
            self._receiver = app.events.Receiver(conn, handlers={"*": self._on_event})
            self._ready.set()
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.seen[event["type"]] += 1

    def caught_up(self, timeout_s: float = 10.0) -> None:
        """Send probe events until one arrives: events reach one queue in the order they were
        published, so everything published before is in. (Probes also tell when the
        receiver's queue is bound, which happens once capture() consumes.)"""
        seen_before = self.seen[PROBE]
        with app.events.default_dispatcher() as dispatcher:

            def probe_arrived() -> bool:
                dispatcher.send(PROBE)
                return self.seen[PROBE] > seen_before

            wait_until(probe_arrived, timeout_s, "no probe event came back")

    def __enter__(self) -> TaskEvents:
        self._thread.start()
        self._ready.wait(10)
        self.caught_up()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=5)


def redis_dump(client: redis.Redis) -> bytes:
    """Every value in the test database: queued messages, waiting RefIds, counters."""
    chunks: list[Any] = []
    for key in client.scan_iter(count=1000):
        chunks.append(key)
        kind = client.type(key)
        if kind == b"string":
            chunks.append(client.get(key) or b"")
        elif kind == b"list":
            chunks += client.lrange(key, 0, -1)
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                chunks += [field, value]
        elif kind == b"set":
            chunks += list(client.smembers(key))
        elif kind == b"zset":
            chunks += client.zrange(key, 0, -1)
    return b"\n".join(c if isinstance(c, bytes) else str(c).encode() for c in chunks)


def test_no_refid_lost_under_faults_and_a_killed_worker(
    make_settings, faulty_sim, tmp_path, redis_client
):
    app.control.purge()
    faulty_sim.reset()
    settings = make_settings(
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        base_url=faulty_sim.base_url,
        rate_interval_s=0.1,
        rate_margin_s=0.02,
        http_timeout_s=3.0,
        repoll_after_s=1.0,
        max_age_s=300.0,
        retry_base_s=0.2,
        max_retries=3,
        drainers=3,
        release_every_s=0.5,
    )
    env = settings_env(settings)
    ref_ids = [f"fault-{i:05d}" for i in range(2000)]
    procs: list[Child] = []
    try:
        with TaskEvents() as task_events:
            # given the first submissions accepted and acknowledged by a worker that only
            # takes submissions (a dead worker's unacknowledged tasks come back only after the
            # broker's visibility timeout, longer than this test), and stopped cleanly
            acceptor = start_worker("acceptor", env, tmp_path, queues="esms.fetch")
            procs.append(acceptor)
            for start in range(0, 500, 10):
                fetch_callbacks.delay(ref_ids[start : start + 10], OA)
            acceptor.wait_until(
                lambda: acceptor.log.count("accepted 10 RefIds") == 50,
                30,
                "accept the first 50 submissions",
            )
            acceptor.stop()
            # and one worker that only drains, inside a request that eSMS is slow (8 s, within
            # the victim's own 10 s timeout) to answer: nothing else stands between that
            # request starting and the kill, so a loaded machine has time to kill it
            # mid-request; its RefIds come back when its lease (2 x 10 s + 5 s) runs out.
            faulty_sim.add_fault("slow", delay_s=VICTIM_SLOW_S)
            victim = start_worker(
                "victim", {**env, "ESMS_HTTP_TIMEOUT": "10.0"}, tmp_path, queues="esms.drain"
            )
            procs.append(victim)
            victim.wait_until(
                lambda: any(r["fault"] == "slow" for r in faulty_sim.requests()),
                30,
                "start the slow request",
            )
            slow = next(r for r in faulty_sim.requests() if r["fault"] == "slow")

            # when that worker is killed outright, mid-request
            victim.kill()
            killed_after_s = time.time() - slow["received_at_s"]
            assert killed_after_s < VICTIM_SLOW_S, f"killed {killed_after_s:.1f} s in: too late"
            broker_mid_run = redis_dump(redis_client)  # the dead worker's lease still held

            # and others take over while eSMS misbehaves in every documented way
            for kind, params, count in FAULTS:
                faulty_sim.add_fault(kind, count=count, **params)
            procs += [start_worker(f"w{i}", env, tmp_path) for i in (1, 2)]
            procs.append(start_beat(env, tmp_path))
            for start in range(500, len(ref_ids), 10):
                fetch_callbacks.delay(ref_ids[start : start + 10], OA)

            events = drain_events(
                settings.broker_url,
                settings.status_queue,
                want=0,
                timeout_s=150,
                until=until_terminal(ref_ids),
            )
            task_events.caught_up()
    finally:
        stop_all(procs)

    # expect every RefId to end in exactly one terminal state
    terminal_states: dict[str, set[str]] = defaultdict(set)
    ids_by_state: dict[tuple[str, str], set[str]] = defaultdict(set)
    for e in events:
        ids_by_state[(e["ref_id"], e["status"])].add(e["event_id"])
        if e["terminal"]:
            terminal_states[e["ref_id"]].add(e["status"])
    lost = set(ref_ids) - set(terminal_states)
    assert not lost, f"{len(lost)} RefIds lost, e.g. {sorted(lost)[:5]}"
    assert all(len(states) == 1 for states in terminal_states.values())
    # the batch the victim held (the oldest RefIds) was asked again after its lease expired
    assert faulty_sim.asked(ref_ids[0]) >= 2
    # duplicates of an event keep its id
    assert all(len(ids) == 1 for ids in ids_by_state.values())

    # the faults really happened, and retries went through Celery (Flower sees them)
    faults = faulty_sim.stats()["faults"]
    assert sum(faults.values()) == 1 + sum(count for _, _, count in FAULTS), faults
    assert task_events.seen["task-retried"] >= 5, dict(task_events.seen)
    assert task_events.seen["task-sent"] > 0, dict(task_events.seen)
    assert task_events.seen["task-revoked"] == 0, dict(task_events.seen)  # no retry expired

    # and the secret never appears: logs, events, broker and Redis contents
    logs = "".join(p.log for p in procs)
    for where, text in [
        ("worker and beat logs", logs.encode()),
        ("status events", json.dumps(events).encode()),
        ("Redis mid-run", broker_mid_run),
        ("Redis at the end", redis_dump(redis_client)),
    ]:
        assert SECRET_KEY.encode() not in text, f"the SecretKey leaked into {where}"
        assert API_KEY.encode() not in text, f"the ApiKey leaked into {where}"

    terminal_events = [e for e in events if e["terminal"]]
    print(
        f"\nfault report: RefIds submitted {len(ref_ids)}, lost {len(lost)}, terminal events "
        f"{len(terminal_events)} ({len(terminal_events) - len(ref_ids)} duplicates), "
        f"faults {faults}, task-retried {task_events.seen['task-retried']}, "
        f"requests {faulty_sim.stats()['requests']}, victim killed {killed_after_s:.2f} s into "
        "its slow request"
    )
