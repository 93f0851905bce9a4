"""Flower as the Procfile runs it: password from the environment only, loopback by default;
and what it lists: the task events of submissions, drains and their retries, none of beat's
pulse (a real worker and beat, the events captured as Flower captures them)."""

from __future__ import annotations

import os
import subprocess
import threading
import urllib.error
import urllib.request
from base64 import b64encode
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from esms_callbacks.cli.processes import free_port, stop_all
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.stats import RequestStats
from esms_callbacks.tasks import app, fetch_callbacks
from tests.helpers import account_for, wait_until
from tests.procs import settings_env, start_beat, start_worker

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "flower-test-pw-8c1d"


def procfile_line(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} line in the Procfile")


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp writes them) listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_flower_refuses_to_start_without_a_password():
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    done = subprocess.run(
        ["sh", "-c", procfile_line("flower")], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "set FLOWER_BASIC_AUTH=user:password" in done.stderr


@pytest.mark.slow
def test_flower_listens_on_loopback_and_keeps_its_password_off_the_command_line(redis_url):
    port = free_port()
    env = {
        **os.environ,
        "FLOWER_BASIC_AUTH": f"admin:{PASSWORD}",
        "FLOWER_PORT": str(port),
        "CELERY_BROKER_URL": redis_url,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    flower = subprocess.Popen(
        ["sh", "-c", procfile_line("flower")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        try:
            urllib.request.urlopen(url, timeout=2)
        except urllib.error.HTTPError as exc:
            assert exc.code == 401  # it answers, and not without the password
            return True
        except OSError:
            assert flower.poll() is None, "flower exited"
            return False
        raise AssertionError("flower answered without the password")

    try:
        wait_until(answers, 60, "flower did not start")
        login = b64encode(f"admin:{PASSWORD}".encode()).decode()
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {login}"})
        assert urllib.request.urlopen(request, timeout=5).status == 200
        # only on loopback (127.0.0.1 is 0100007F in /proc/net/tcp)
        assert listening_addresses(port) == {"0100007F"}
        # and the password is nowhere in its command line (what `ps` shows every user)
        cmdline = Path(f"/proc/{flower.pid}/cmdline").read_bytes().decode(errors="replace")
        assert "flower" in cmdline and PASSWORD not in cmdline
    finally:
        os.killpg(flower.pid, 15)
        flower.wait(timeout=15)


class TaskEvents:
    """Celery's task events as Flower receives them, by task id: their types and the task's
    name (task-sent and task-received carry it)."""

    def __init__(self) -> None:
        self.types: defaultdict[str, list[str]] = defaultdict(list)
        self.names: dict[str, str] = {}
        self.probes = 0
        self.receiver: Any = None

    def on_event(self, event: dict[str, Any]) -> None:
        if event["type"] == "test-probe":
            self.probes += 1
        elif event["type"].startswith("task-"):
            self.types[event["uuid"]].append(event["type"])
            if event.get("name"):
                self.names[event["uuid"]] = event["name"]

    def caught_up(self) -> None:
        """Return once an event sent now came back: everything sent before it is in."""
        seen = self.probes
        with app.events.default_dispatcher() as dispatcher:

            def arrived() -> bool:
                dispatcher.send("test-probe")
                return self.probes > seen

            wait_until(arrived, 15, "no probe event came back")

    def of(self, name: str) -> list[str]:
        return [uuid for uuid, task in self.names.items() if task == name]


@contextmanager
def task_events() -> Iterator[TaskEvents]:
    events = TaskEvents()
    ready = threading.Event()

    def run() -> None:
        with app.connection() as conn:
            events.receiver = app.events.Receiver(conn, handlers={"*": events.on_event})
            ready.set()
            events.receiver.capture(limit=None, timeout=None, wakeup=False)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        events.caught_up()
        yield events
    finally:
        events.receiver.should_stop = True
        thread.join(timeout=5)


def drained(events: TaskEvents) -> bool:
    events.caught_up()
    return any("task-succeeded" in events.types[uuid] for uuid in events.of("esms.drain"))


@pytest.mark.slow
def test_flower_sees_submissions_and_drains_but_not_beats_pulse(make_settings, sim, tmp_path):
    # given a worker with task events on (celeryconfig) and beat pulsing every 0.5 s
    settings = make_settings(release_every_s=0.5)
    env = settings_env(settings)
    stats = RequestStats(
        redis.Redis.from_url(settings.redis_url), AccountKeys(account_for(settings).key_id)
    )
    with task_events() as events:
        procs = [start_worker("flower-events", env, tmp_path), start_beat(env, tmp_path)]
        try:
            # when RefIds are submitted and drained, while several pulses run on the worker
            fetch_callbacks.delay([f"r-{n}" for n in range(150)], "oa-1")
            wait_until(lambda: len(sim.requests) >= 2, 60, "the RefIds were not asked")
            wait_until(lambda: drained(events), 30, "no drain ended")
            wait_until(lambda: bool(stats.snapshot().beat_release_at_s), 30, "no pulse ran")
            first_pulse_s = stats.snapshot().beat_release_at_s or 0.0
            wait_until(
                lambda: (stats.snapshot().beat_release_at_s or 0.0) > first_pulse_s,
                30,
                "no second pulse ran",
            )
            events.caught_up()
        finally:
            stop_all(procs)
    # expect the submission and the drains with their events, from sent to done
    (submission,) = events.of("esms.fetch_callbacks")
    # (the producer sends task-sent, the worker task-received: two connections, either first)
    assert sorted(events.types[submission][:2]) == ["task-received", "task-sent"]
    assert "task-succeeded" in events.types[submission]
    drains = events.of("esms.drain")
    assert any("task-succeeded" in events.types[uuid] for uuid in drains), dict(events.types)
    # and not one event of a pulse: neither beat's task-sent nor the worker's
    assert events.of("esms.release") == []
    assert set(events.types) == set(events.names), "events of a task never sent nor received"
