"""What tests share besides fixtures: constants, waiting on conditions, reading the status
queue, an in-process worker with beat's part played by a thread. Fixtures are in conftest.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import ModuleType
from typing import Any

from kombu import Connection

from esms_callbacks.accounts import RECEIVER_SECRETS, WORKER_SECRETS, Account, default_account
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings

T0 = 1_800_000_000.0  # a fixed epoch second for manual clocks
SIM_API_KEY = "sim-api-key-Zq81TESTONLY"
SIM_SECRET_KEY = "sim-secret-key-Xk29TESTONLY"


def drain_events(
    broker_url: str,
    queue: str,
    want: int,
    timeout_s: float = 30.0,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Take events off the status queue until `want` arrived (or `until` says so).

    Taken without acknowledgements (kombu's no_ack): a message is off the queue once read, as
    with read_events, without the two transactions per message that acknowledging costs on
    Redis (the CPU of the slow tests, which read thousands). read_events has tests of its own.
    """
    events: list[dict[str, Any]] = []
    done = until or (lambda got: len(got) >= want)
    deadline = time.monotonic() + timeout_s
    with Connection(broker_url) as conn:
        simple = conn.SimpleQueue(queue, no_ack=True)
        try:
            while not done(events) and (left_s := deadline - time.monotonic()) > 0:
                try:
                    message = simple.get(timeout=max(0.05, min(1.0, left_s)))
                except simple.Empty:
                    continue
                events.append(message.payload)
        finally:
            simple.close()
    return events


def until_terminal(
    ref_ids: Iterable[str] = (), at_least: int = 0
) -> Callable[[list[dict[str, Any]]], bool]:
    """An `until` for drain_events: true once every RefId in `ref_ids`, and at least
    `at_least` RefIds in all, have a terminal event. It looks at each event once (a set built
    from every event so far, after each one, costs seconds of CPU over thousands)."""
    missing, terminal, seen = set(ref_ids), set[str](), 0

    def done(got: list[dict[str, Any]]) -> bool:
        nonlocal seen
        for event in got[seen:]:
            if event["terminal"]:
                terminal.add(event["ref_id"])
                missing.discard(event["ref_id"])
        seen = len(got)
        return not missing and len(terminal) >= at_least

    return done


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `predicate` every 50 ms; TimeoutError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def celery_config_for(broker_url: str) -> dict[str, Any]:
    """The project's celeryconfig (queues, routes, acks, events) on `broker_url`: how the
    tests' own Celery apps are configured, so that the production app never is."""
    from esms_callbacks import celeryconfig

    return {
        **{
            name: value
            for name, value in vars(celeryconfig).items()
            if name.islower() and not name.startswith("_") and not isinstance(value, ModuleType)
        },
        "broker_url": broker_url,
        # Celery prefers CELERY_BROKER_URL to broker_url, but not to these.
        "broker_read_url": broker_url,
        "broker_write_url": broker_url,
    }


def account_for(settings: Settings, name: str = "") -> Account:
    """The account `default` as the environment names it now (the test's own: conftest's
    make_settings sets it), every secret resolved; `name`: the same under a name (and keys)
    of its own, for tests of several accounts."""
    account = default_account(settings, WORKER_SECRETS | RECEIVER_SECRETS)
    return replace(account, name=name, key_id=name) if name else account


def runtime_of(settings: Settings, name: str = "", **options: Any) -> Runtime:
    """A Runtime of the test's account (account_for) on `settings`."""
    return Runtime(settings, account_for(settings, name), **options)


@contextmanager
def in_process_worker(settings: Settings) -> Iterator[Settings]:
    """A Celery worker in this process (threads pool) on both queues, using `settings`, with
    beat's part played by a thread: RefIds asked again later are only started by a release.

    The worker runs on a Celery app of its own, built as pytest-celery's celery_session_app
    is (celery.contrib.testing's TestApp) from `celery_config_for(settings.broker_url)`, and
    closed afterwards: the production app is not reconfigured. Its tasks are the project's
    own (`@app.task` registers a task on every app, not only on the app it names); the
    drains they queue go through the production app, on the test broker (see conftest.py)."""
    from celery.contrib.testing.app import TestApp, setup_default_app
    from celery.contrib.testing.worker import start_worker

    # Imported before the app exists: its tasks are added to apps finalized after the import.
    import esms_callbacks.tasks  # noqa: F401
    from esms_callbacks.tasks.context import worker_context

    app = TestApp("esms-test", config=celery_config_for(settings.broker_url))
    worker_context.use_settings(settings)
    try:
        # setup_default_app: the worker makes its app the current one; put the previous back.
        with (
            setup_default_app(app),
            start_worker(
                app,
                pool="threads",
                concurrency=4,
                perform_ping_check=False,
                queues=["esms.fetch", "esms.drain"],
                loglevel="WARNING",
                shutdown_timeout=30,
            ),
            releasing_every(app, settings.release_every_s),
        ):
            yield settings
    finally:
        worker_context.use_settings(None)


@contextmanager
def releasing_every(app: Any, interval_s: float) -> Iterator[None]:
    """Send `esms.release` through `app` every `interval_s`, as `celery beat` does with
    celeryconfig's schedule (a publish that fails is skipped, as beat skips it)."""
    import threading

    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_s):
            try:
                app.send_task("esms.release", expires=max(10.0, interval_s * 5))
            except Exception:  # beat logs a failed publish and carries on; so do we
                continue

    thread = threading.Thread(target=run, name="beat-stand-in", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def whereabouts(backlog: Any, oa_id: str, ref_id: str) -> Any:
    """Where a RefId the test knows is there is (Backlog.where, never None here)."""
    found = backlog.where(oa_id, ref_id)
    assert found is not None, f"{ref_id} is not known under OA {oa_id}"
    return found
