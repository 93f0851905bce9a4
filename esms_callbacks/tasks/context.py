"""This worker process's collaborators, built once when the process starts and handed to its
tasks as `self.runtime` (arq's ctx, in Celery's shape: a base task class).

The main process builds them at worker_init (they serve the solo and threads pools and the
worker's signals); a prefork child builds its own after the fork (worker_process_init), since
sockets must not be shared across processes. A task run where no worker started (eagerly, in
a test) builds them on first use.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Task
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutting_down,
)

from esms_callbacks.engine.redis_policy import eviction_problem
from esms_callbacks.errors import ConfigError
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings
from esms_callbacks.tasks.app import app
from esms_callbacks.tuning import DRAIN_EXPIRES_S

DRAIN_TASK = "esms.drain"


def queue_drain() -> object:
    """Queue one drain task (routed to esms.drain by name, celeryconfig.task_routes)."""
    return app.send_task(DRAIN_TASK, expires=DRAIN_EXPIRES_S)


class WorkerContext:
    """One process's Runtime, made anew in a forked child."""

    def __init__(self) -> None:
        self._built: tuple[int, Runtime] | None = None
        self._settings: Settings | None = None

    def start(self) -> Runtime:
        """Build this process's collaborators from its settings (the environment, unless a
        test said otherwise with `use_settings`)."""
        self.stop()
        settings = self._settings or Settings.from_env(process="worker")
        runtime = Runtime(settings, queue_drain=queue_drain)
        self._built = (os.getpid(), runtime)
        return runtime

    @property
    def runtime(self) -> Runtime:
        if self._built is None or self._built[0] != os.getpid():
            return self.start()
        return self._built[1]

    def stop(self) -> None:
        """Release this process's collaborators (the eSMS client's keep-alive connection)."""
        if self._built is not None and self._built[0] == os.getpid():
            self._built[1].close()
        self._built = None

    def use_settings(self, settings: Settings | None) -> None:
        """Run this process's tasks on `settings` (tests); None goes back to the environment."""
        self.stop()
        self._settings = settings


worker_context = WorkerContext()


class RuntimeTask(Task):  # type: ignore[misc]
    """A task that runs on its worker process's collaborators."""

    @property
    def runtime(self) -> Runtime:
        return worker_context.runtime


@worker_process_init.connect
def _build_in_the_child(**_: Any) -> None:
    worker_context.start()


@worker_process_shutdown.connect
def _close_in_the_child(**_: Any) -> None:
    worker_context.stop()  # a clean goodbye to eSMS's keep-alive connection


@worker_init.connect
def _build_in_the_main_process(**_: Any) -> None:
    """Build the worker's collaborators. A worker on a Redis that may evict keys cannot keep
    the rate or the one terminal event per RefId: it does not start (SystemExit passes
    through Celery's signal handling)."""
    try:
        client = worker_context.start().redis
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
    runtime = worker_context.runtime
    if runtime.settings.account_known:
        runtime.dispatch.worker_stopping(sender)


@worker_ready.connect
def _say_where(sender: Any = None, **_: Any) -> None:
    """One line an operator reads first: which eSMS, which account, which limits."""
    runtime = worker_context.runtime
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
