"""Shared fixtures: real Redis (a test database), the simulator over real HTTP, settings.

The Redis URL comes from ESMS_TEST_REDIS_URL (default: database 13 of the local server);
every test gets its own account id and status queue, so tests never see each other's keys.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

TEST_REDIS_URL = os.environ.get("ESMS_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
# Set before the Celery app is imported: celeryconfig reads the environment once.
os.environ["CELERY_BROKER_URL"] = TEST_REDIS_URL
os.environ["ESMS_REDIS_URL"] = TEST_REDIS_URL

from kombu import Connection  # noqa: E402

from esms_callbacks.simulator.app import Simulator  # noqa: E402
from esms_callbacks.simulator.server import serve_in_thread  # noqa: E402
from esms_callbacks.workers.clock import ManualClock  # noqa: E402
from esms_callbacks.workers.drainer import Drainer  # noqa: E402
from esms_callbacks.workers.runtime import Runtime  # noqa: E402
from esms_callbacks.workers.settings import Settings  # noqa: E402
from esms_callbacks.workers.window import Window  # noqa: E402

T0 = 1_800_000_000.0  # a fixed epoch second for manual clocks
SIM_API_KEY = "sim-api-key-Zq81TESTONLY"
SIM_SECRET_KEY = "sim-secret-key-Xk29TESTONLY"


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.exit(f"no Redis at {TEST_REDIS_URL} ({exc}); run `make test`, which starts one")
    client.flushdb()
    return TEST_REDIS_URL


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def running_sim() -> Iterator[Any]:
    sim = Simulator(
        api_key=SIM_API_KEY, secret_key=SIM_SECRET_KEY, rate_interval_s=0.0, policy="sent"
    )
    with serve_in_thread(sim) as running:
        yield running


@pytest.fixture
def sim(running_sim: Any) -> Simulator:
    """The session's simulator, reset: empty log, no scripts or faults, policy 'sent'."""
    running_sim.sim.reset()
    running_sim.sim.set_policy("sent")
    running_sim.sim.rate_interval_s = 0.0
    running_sim.sim.max_refs = 100
    running_sim.sim.is_open = None
    return running_sim.sim  # type: ignore[no-any-return]


@pytest.fixture
def make_settings(redis_url: str, running_sim: Any) -> Callable[..., Settings]:
    """Settings for one test: its own account and status queue, small intervals."""
    test_id = uuid.uuid4().hex[:12]

    def make(**changes: Any) -> Settings:
        base = Settings(
            broker_url=redis_url,
            redis_url=redis_url,
            api_key=SIM_API_KEY,
            secret_key=SIM_SECRET_KEY,
            base_url=running_sim.base_url,
            rate_interval_s=0.05,
            rate_margin_s=0.005,
            window=Window.parse("always"),
            status_queue=f"esms.status.test-{test_id}",
            http_timeout_s=5.0,
            repoll_after_s=0.5,
            max_retries=3,
            retry_base_s=0.1,
            account=f"test-{test_id}",
        )
        return base.with_changes(**changes)

    return make


def drain_events(
    broker_url: str,
    queue: str,
    want: int,
    timeout_s: float = 30.0,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Consume events from the status queue until `want` arrived (or `until` says so)."""
    import time

    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    done = until or (lambda got: len(got) >= want)
    with Connection(broker_url) as conn:
        q = conn.SimpleQueue(queue)
        try:
            while not done(events) and time.monotonic() < deadline:
                try:
                    message = q.get(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
                except q.Empty:
                    continue
                events.append(message.payload)
                message.ack()
        finally:
            q.close()
    return events


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `predicate` every 50 ms; TimeoutError naming `what` after `timeout_s`."""
    import time

    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@contextmanager
def in_process_worker(settings: Settings) -> Iterator[Settings]:
    """A Celery worker in this process (threads pool) on both queues, using `settings`, with
    beat's part played by a thread: RefIds asked again later are only started by a release."""
    from celery.contrib.testing.worker import start_worker

    from esms_callbacks.tasks import app
    from esms_callbacks.workers.runtime import use_settings

    use_settings(settings)
    app.conf.broker_url = settings.broker_url
    try:
        with (
            start_worker(
                app,
                pool="threads",
                concurrency=4,
                perform_ping_check=False,
                queues=["esms.fetch", "esms.drain"],
                loglevel="WARNING",
                shutdown_timeout=30,
            ),
            releasing_every(settings.release_every_s),
        ):
            yield settings
    finally:
        use_settings(None)


@contextmanager
def releasing_every(interval_s: float) -> Iterator[None]:
    """Send `esms.release` every `interval_s`, as `celery beat` does with celeryconfig's
    schedule (a publish that fails is skipped, as beat skips it)."""
    import threading

    from esms_callbacks.tasks import app

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


@pytest.fixture
def fetch_queue(redis_url: str) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Read back (and remove) what producers queued on esms.fetch; empty at the start."""
    from esms_callbacks.tasks import app

    app.control.purge()

    def queued() -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        with Connection(redis_url) as conn:
            queue = conn.SimpleQueue("esms.fetch")
            try:
                while True:
                    try:
                        message = queue.get(timeout=0.5)
                    except queue.Empty:
                        return calls
                    args, kwargs, _ = message.payload
                    calls.append(
                        {
                            "task": message.headers["task"],
                            "args": args,
                            "kwargs": kwargs,
                            "argsrepr": message.headers["argsrepr"],
                        }
                    )
                    message.ack()
            finally:
                queue.close()

    yield queued
    app.control.purge()


@pytest.fixture
def drain_env(make_settings: Callable[..., Settings], sim: Simulator) -> Iterator[Any]:
    """Build a drainer on a manual clock (T0); its events go to the returned list."""
    published: list[dict[str, Any]] = []
    runtimes: list[Runtime] = []

    def build(**changes: Any) -> tuple[Drainer, Runtime, ManualClock, list[dict[str, Any]]]:
        settings = make_settings(
            **{"rate_interval_s": 0.001, "rate_margin_s": 0.0, "retry_base_s": 5.0, **changes}
        )
        runtime = Runtime(settings)
        runtimes.append(runtime)
        clock = ManualClock(T0)
        drainer = runtime.drainer()
        drainer.publish, drainer.clock = published.extend, clock
        return drainer, runtime, clock, published

    yield build
    for runtime in runtimes:
        runtime.close()


@pytest.fixture
def cli_env(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The environment the CLI reads, for one test's account and status queue."""
    settings = make_settings()
    for name, value in {
        "ESMS_ACCOUNT": settings.account,
        "ESMS_STATUS_QUEUE": settings.status_queue,
        "ESMS_API_KEY": settings.api_key,
        "ESMS_SECRET_KEY": settings.secret_key,
    }.items():
        monkeypatch.setenv(name, value)
    from esms_callbacks.workers.runtime import use_settings

    use_settings(None)
    yield settings
    use_settings(None)
