"""The Celery app; configuration comes from celeryconfig.py."""

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown, worker_ready, worker_shutting_down

from esms_callbacks.engine.redis_policy import eviction_problem
from esms_callbacks.errors import ConfigError
from esms_callbacks.runtime import close_runtime, get_runtime
from esms_callbacks.tasks import broker_fix

app = Celery("esms")
app.config_from_object("esms_callbacks.celeryconfig")


@worker_init.connect
def _install_broker_fix(**_: Any) -> None:
    """Only workers run tasks while the broker may restart; web apps, beat and Flower that
    import this module are left untouched (pool children inherit the patch)."""
    broker_fix.install()


@worker_init.connect
def _refuse_an_evicting_redis(**_: Any) -> None:
    """A worker on a Redis that may evict keys cannot keep the rate or the one terminal event
    per RefId: it does not start (SystemExit passes through Celery's signal handling)."""
    try:
        client = get_runtime().redis
    except ConfigError as exc:  # Celery logs and ignores anything but SystemExit here
        logging.getLogger("esms").critical("not starting: %s", exc)
        raise SystemExit(str(exc)) from None
    problem = eviction_problem(client)
    if problem:
        logging.getLogger("esms").critical("not starting: %s", problem)
        raise SystemExit(problem)


@worker_shutting_down.connect
def _tell_drainers_to_stop(sender: str = "", **_: Any) -> None:
    """A warm shutdown (a deploy) waits for running tasks: let this worker's drains stop at
    their next step rather than run out their budget (esms_callbacks/tasks/drain.py)."""
    runtime = get_runtime()
    if runtime.settings.account_known:
        runtime.dispatch.worker_stopping(sender)


@worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    close_runtime()  # a clean goodbye to eSMS's keep-alive connection


@worker_ready.connect
def _say_where(sender: Any = None, **_: Any) -> None:
    """One line an operator reads first: which eSMS, which account, which limits."""
    runtime = get_runtime()
    s = runtime.settings
    hostname = getattr(sender, "hostname", "")
    if hostname and s.account_known:  # a worker restarted under the same name drains again
        runtime.dispatch.worker_started(hostname)
    where = "the bundled eSMS SIMULATOR" if s.simulated else "eSMS"
    credentials = "set" if s.has_credentials else "NOT SET: nothing will be sent"
    logging.getLogger("esms").warning(
        "fetching from %s at %s for account %s, named by %s (credentials %s); window %s, one "
        "request per %gs, up to %d RefIds each",
        where,
        s.base_url,
        s.account_id if s.account_known else "NONE",
        s.account_source,
        credentials,
        s.window,
        s.spacing_s,
        s.max_refs_per_request,
    )
