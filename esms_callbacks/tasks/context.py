"""This worker process's collaborators, built once when the process starts and handed to its
tasks as `self.runtimes` (every account's; arq's ctx, in Celery's shape: a base task class).

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

from esms_callbacks.accounts import WORKER_SECRETS, AccountBook
from esms_callbacks.engine.redis_policy import eviction_problem
from esms_callbacks.engine.turns import Turns
from esms_callbacks.errors import ConfigError
from esms_callbacks.runtime import Runtime, Runtimes
from esms_callbacks.settings import Settings
from esms_callbacks.tasks.app import app
from esms_callbacks.terms import redact_url
from esms_callbacks.tuning import DRAIN_EXPIRES_S, FAIR_TURN_S

DRAIN_TASK = "esms.drain"


def queue_drain(account: str, queued_as: str) -> object:
    """Queue one drain task of `account`, counted as `queued_as` until it starts (routed to
    esms.drain by name, celeryconfig)."""
    return app.send_task(
        DRAIN_TASK, kwargs={"account": account, "queued_as": queued_as}, expires=DRAIN_EXPIRES_S
    )


class WorkerContext:
    """One process's Runtimes and its view of the turns, made anew in a forked child."""

    def __init__(self) -> None:
        self._built: tuple[int, Runtimes, Turns] | None = None
        self._settings: Settings | None = None
        # How long a turn on the pool lasts while other accounts wait (a benchmark's
        # workers set it shorter, bench/accounts_app.py).
        self.fair_turn_s = FAIR_TURN_S

    def start(self) -> Runtimes:
        """Build this process's collaborators from its settings (the environment, unless a
        test said otherwise with `use_settings`) and its accounts. ConfigError if they cannot
        be used."""
        self.stop()
        settings = self._settings or Settings.from_env(process="worker")
        runtimes = Runtimes(AccountBook(settings, WORKER_SECRETS), queue_drain=queue_drain)
        # The accounts the deployment serves: its accounts file's, read again as it changes.
        turns = Turns(runtimes.shared.redis, runtimes.book.accounts, self.fair_turn_s)
        self._built = (os.getpid(), runtimes, turns)
        return runtimes

    @property
    def runtimes(self) -> Runtimes:
        if self._built is None or self._built[0] != os.getpid():
            return self.start()
        return self._built[1]

    @property
    def turns(self) -> Turns:
        """The turns on the worker pool of this process's deployment."""
        if self._built is None or self._built[0] != os.getpid():
            self.start()
        assert self._built is not None
        return self._built[2]

    @property
    def runtime(self) -> Runtime:
        """The `default` account's (the only one without an accounts file)."""
        return self.runtimes.default()

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
    def runtimes(self) -> Runtimes:
        return worker_context.runtimes

    @property
    def runtime(self) -> Runtime:
        """The `default` account's."""
        return worker_context.runtime

    @property
    def turns(self) -> Turns:
        return worker_context.turns


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
        client = worker_context.start().shared.redis
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
    for runtime in serving(worker_context.runtimes):
        runtime.dispatch.worker_stopping(sender)


def serving(runtimes: Runtimes) -> list[Runtime]:
    """The accounts RefIds can be filed under (without a file, `default` only once named)."""
    return [runtime for runtime in runtimes.all() if runtime.account.known]


@worker_ready.connect
def _say_where(sender: Any = None, **_: Any) -> None:
    """The lines an operator reads first: which eSMS, which accounts, which limits."""
    runtimes = worker_context.runtimes
    hostname = getattr(sender, "hostname", "")
    for runtime in serving(runtimes):
        if hostname:  # a worker restarted under the same name drains again
            runtime.dispatch.worker_started(hostname)
    if runtimes.book.from_file:
        logging.getLogger("esms").warning(
            "serving %d eSMS accounts from ESMS_ACCOUNTS_FILE=%s",
            len(runtimes.names()),
            runtimes.book.settings.accounts_file,
        )
    served = runtimes.all()
    for runtime in served:  # a line each; past a few accounts, at INFO (status shows them)
        say_where(runtime, logging.WARNING if len(served) <= SAY_EACH_UP_TO else logging.INFO)


SAY_EACH_UP_TO = 20  # accounts whose first lines a worker writes as warnings


def say_where(runtime: Runtime, level: int = logging.WARNING) -> None:
    """One account's line: which eSMS, which account, which limits."""
    account, terms = runtime.account, runtime.terms
    where = "the bundled eSMS SIMULATOR" if runtime.settings.simulated else "eSMS"
    credentials = "set" if account.secrets.has_credentials else "NOT SET: nothing will be sent"
    logging.getLogger("esms").log(
        level,
        "fetching from %s at %s for account %s (keys %s, named by %s; credentials %s); "
        "window %s, one request per %gs, up to %d RefIds each",
        where,
        redact_url(terms.base_url),
        account.name,
        account.key_id or "NONE",
        account.named_by,
        credentials,
        terms.window,
        terms.spacing_s,
        terms.max_refs_per_request,
    )
