"""Shared fixtures: real Redis (a test database), the simulator over real HTTP, settings.

The Redis URL comes from ESMS_TEST_REDIS_URL (default: database 12 of the local server);
every test gets its own account id and status queue, so tests never see each other's keys.
Under pytest-xdist (`-n N`) each worker process is a session of its own on a database of its
own (tests/isolation.py): its broker, queues and Redis keys are its alone, as are its
simulator, ports and environment, so a new test file needs nothing to run in parallel.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import pytest
import redis
from kombu import Connection

from esms_callbacks.engine.clock import ManualClock
from esms_callbacks.engine.drainer import Drainer
from esms_callbacks.esms.window import Window
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings
from esms_callbacks.simulator.app import Simulator
from esms_callbacks.simulator.server import serve_in_thread
from esms_callbacks.terms import Terms
from esms_callbacks.variables import declared
from tests.helpers import SIM_API_KEY, SIM_SECRET_KEY, T0, celery_config_for, runtime_of
from tests.isolation import SLOW_AT_ONCE, one_of, worker_redis_url
from tests.receiving import TOKEN as RECEIVER_TOKEN

TEST_REDIS_URL = worker_redis_url(
    os.environ.get("ESMS_TEST_REDIS_URL", "redis://127.0.0.1:6379/12"),
    os.environ.get("PYTEST_XDIST_WORKER"),
)


@pytest.fixture(scope="session", autouse=True)
def production_app_on_the_test_redis() -> Iterator[None]:
    """Point the production Celery app at the test Redis for the session, by its environment.

    `esms_callbacks.tasks.app` is configured by the environment only, as under the Procfile,
    and Celery reads CELERY_BROKER_URL before the app's own settings when it connects. Tests
    `.delay()` through that app as a web app does, and tasks queue drains through it: this is
    how they reach the test broker with the app itself left as it is. Undone after the
    session; a CELERY_BROKER_URL or ESMS_REDIS_URL in the developer's shell reaches no test.
    """
    with pytest.MonkeyPatch.context() as env:
        # This worker's own database, for whatever reads ESMS_TEST_REDIS_URL (subprocesses too).
        env.setenv("ESMS_TEST_REDIS_URL", TEST_REDIS_URL)
        env.setenv("CELERY_BROKER_URL", TEST_REDIS_URL)
        env.setenv("ESMS_REDIS_URL", TEST_REDIS_URL)
        yield


@pytest.fixture(autouse=True)
def few_slow_tests_at_once(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Under pytest-xdist, a test marked slow waits until no other slow test of its module runs
    (they share scenarios: topologies, RabbitMQ queues, worker names) and for one of
    SLOW_AT_ONCE places shared by the run's workers (tests/isolation.py), so that heavy
    multi-process tests do not pile up on the CPU while the others run beside them."""
    if request.node.get_closest_marker("slow") is None or not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    # Each worker's base temp is popen-gwN in the run's own directory.
    slots = tmp_path_factory.getbasetemp().parent / "slow-slots"
    module = request.node.path.stem
    with one_of(1, slots / module), one_of(SLOW_AT_ONCE, slots):  # always in this order
        yield


@pytest.fixture(scope="session")
def celery_config() -> dict[str, Any]:
    """pytest-celery's `celery_session_app`: the project's celeryconfig on the test Redis."""
    return celery_config_for(TEST_REDIS_URL)


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(TEST_REDIS_URL)

    def stop(reason: str) -> NoReturn:
        # An xdist worker's pytest.exit reaches the terminal as a bare "node down": fail.
        if os.environ.get("PYTEST_XDIST_WORKER"):
            pytest.fail(reason, pytrace=False)
        pytest.exit(reason)

    try:
        client.ping()
    except redis.ConnectionError as exc:
        stop(f"no Redis at {TEST_REDIS_URL} ({exc}); run `make test`, which starts one")
    except redis.ResponseError as exc:  # "DB index is out of range": too many xdist workers
        stop(
            f"cannot use {TEST_REDIS_URL} ({exc}): each pytest-xdist worker takes the next "
            "database after ESMS_TEST_REDIS_URL's; start from a lower one or use fewer workers"
        )
    client.flushdb()  # this session's own database only (never FLUSHALL: others share the server)
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
    running_sim.sim.configure(
        query_rate_interval_s=0.0, delivery_rate_interval_s=0.0, ledger_rate_interval_s=0.0
    )
    running_sim.sim.max_refs = 100
    running_sim.sim.is_open = None
    return running_sim.sim  # type: ignore[no-any-return]


TERM_NAMES = frozenset(name for name, _ in declared(Terms))  # make_settings routes them
# The account's own (accounts.py): not settings, but the environment the account `default`
# is read from, as in production; make_settings sets them for the test.
ACCOUNT_VARIABLES = {
    "account": "ESMS_ACCOUNT",
    "api_key": "ESMS_API_KEY",
    "secret_key": "ESMS_SECRET_KEY",
    "push_token": "ESMS_PUSH_TOKEN",
    "push_token_previous": "ESMS_PUSH_TOKEN_PREVIOUS",
}


@pytest.fixture
def make_settings(
    redis_url: str, running_sim: Any, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    """Settings for one test: its own account and status queue, small intervals. The
    account (its name, keys and tokens: `account=`, `api_key=`, ...) is set in the
    environment, where the account `default` is read from (tests.helpers.runtime_of)."""
    test_id = uuid.uuid4().hex[:12]
    own = {"account": f"test-{test_id}", "api_key": SIM_API_KEY, "secret_key": SIM_SECRET_KEY}

    def make(**changes: Any) -> Settings:
        account = {**own, **{k: changes.pop(k) for k in list(changes) if k in ACCOUNT_VARIABLES}}
        for name, variable in ACCOUNT_VARIABLES.items():
            if account.get(name):
                monkeypatch.setenv(variable, account[name])
            else:
                monkeypatch.delenv(variable, raising=False)
        base = Settings(
            broker_url=redis_url,
            redis_url=redis_url,
            status_queue=f"esms.status.test-{test_id}",
            http_timeout_s=5.0,
            repoll_after_s=0.5,
            max_retries=3,
            retry_base_s=0.1,
        ).with_terms(
            base_url=running_sim.base_url,
            rest_base_url=running_sim.base_url,
            rate_interval_s=0.05,
            rate_margin_s=0.005,
            window=Window.parse("always"),
        )
        terms = {name: changes.pop(name) for name in list(changes) if name in TERM_NAMES}
        if "base_url" in terms:  # a simulator of its own serves every endpoint
            terms.setdefault("rest_base_url", terms["base_url"])
        return base.with_changes(**changes).with_terms(**terms)

    return make


@pytest.fixture
def fetch_queue(
    redis_url: str, celery_session_app: Any
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Read back (and remove) what producers queued on esms.fetch; empty at the start."""
    celery_session_app.control.purge()

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
    celery_session_app.control.purge()


@pytest.fixture
def drain_env(make_settings: Callable[..., Settings], sim: Simulator) -> Iterator[Any]:
    """Build a drainer on a manual clock (T0); its events go to the returned list."""
    published: list[dict[str, Any]] = []
    runtimes: list[Runtime] = []

    def build(**changes: Any) -> tuple[Drainer, Runtime, ManualClock, list[dict[str, Any]]]:
        settings = make_settings(
            **{"rate_interval_s": 0.001, "rate_margin_s": 0.0, "retry_base_s": 5.0, **changes}
        )
        runtime = runtime_of(settings)
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
    settings = make_settings()  # the account's variables: set
    for name, value in {
        "CELERY_BROKER_URL": settings.broker_url,
        "ESMS_REDIS_URL": settings.redis_url,
        "ESMS_STATUS_QUEUE": settings.status_queue,
    }.items():
        monkeypatch.setenv(name, value)
    from esms_callbacks.tasks.context import worker_context

    worker_context.use_settings(None)
    yield settings
    worker_context.use_settings(None)


@pytest.fixture
def push_settings(make_settings: Any) -> Any:
    """Settings for a receiver test: the test token, pending pushes reclaimed after 0.5 s."""

    def make(**changes: Any) -> Settings:
        settings: Settings = make_settings(
            **{"push_token": RECEIVER_TOKEN, "push_reclaim_after_s": 0.5, **changes}
        )
        return settings

    return make
