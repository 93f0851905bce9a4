"""The Celery app; configuration comes from celeryconfig.py."""

import logging
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_shutdown, worker_ready

from tasks import broker_fix
from workers.redis_policy import eviction_problem
from workers.runtime import close_runtime, get_runtime

app = Celery("esms")
app.config_from_object("celeryconfig")


@worker_init.connect
def _install_broker_fix(**_: Any) -> None:
    """Only workers run tasks while the broker may restart; web apps, beat and Flower that
    import this module are left untouched (pool children inherit the patch)."""
    broker_fix.install()


@worker_init.connect
def _refuse_an_evicting_redis(**_: Any) -> None:
    """A worker on a Redis that may evict keys cannot keep the rate or the one terminal event
    per RefId: it does not start (SystemExit passes through Celery's signal handling)."""
    problem = eviction_problem(get_runtime().redis)
    if problem:
        logging.getLogger("esms").critical("not starting: %s", problem)
        raise SystemExit(problem)


@worker_process_shutdown.connect
def _close_runtime(**_: Any) -> None:
    close_runtime()  # a clean goodbye to eSMS's keep-alive connection


@worker_ready.connect
def _say_where(**_: Any) -> None:
    """One line an operator reads first: which eSMS, which account, which limits."""
    s = get_runtime().settings
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
