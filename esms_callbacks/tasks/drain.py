"""esms.drain (send requests while RefIds are due) and esms.release (beat's heartbeat): glue
between Celery and the engine. A drain looks its account up, takes its turn on the pool
(engine/turns.py), runs the drainer and maps a transient failure to Celery's retry."""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import asdict

from redis.exceptions import RedisError

from esms_callbacks.accounts import UnknownAccount
from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.engine.drainer import DrainReport
from esms_callbacks.engine.keys import RELEASE_LOCK
from esms_callbacks.engine.locks import Lock
from esms_callbacks.engine.turns import Turn, Turns
from esms_callbacks.errors import Retry
from esms_callbacks.ops.log_context import for_account
from esms_callbacks.retry_policy import DRAIN_TASK_RETRY, drain_gives_up
from esms_callbacks.runtime import Runtime, Runtimes
from esms_callbacks.settings import DEFAULT_ACCOUNT
from esms_callbacks.tasks.app import app
from esms_callbacks.tasks.context import RuntimeTask, serving
from esms_callbacks.tuning import (
    DRAIN_BUDGET_S,
    HOUSEKEEPING_EVERY_PULSE_UP_TO,
    HOUSEKEEPING_EVERY_PULSES,
    RELEASE_LOCK_S,
)

log = logging.getLogger(__name__)


@app.task(name="esms.drain", base=RuntimeTask, bind=True, acks_late=True, **DRAIN_TASK_RETRY)
def drain(
    self: RuntimeTask, account: str = DEFAULT_ACCOUNT, queued_as: str = ""
) -> dict[str, object]:
    """Send one account's full requests at its global rate while its window is open and
    RefIds are due; when its turn is over (engine/turns.py), go on with the account that has
    waited longest, within the task's budget."""
    try:
        runtime: Runtime | None = self.runtimes.get(account)
    except UnknownAccount as exc:  # removed from the accounts file since it was queued
        log.warning("drain not run: %s", exc)
        return {"stopped": "unknown account"}
    deadline_s = time.monotonic() + DRAIN_BUDGET_S
    done: list[dict[str, object]] = []
    while runtime is not None:
        with for_account(runtime.account):
            result, over = drain_turn(self, runtime, queued_as, deadline_s)
        done.append({"account": runtime.account, **result})
        queued_as = ""
        runtime = next_turn(self.runtimes, self.turns, runtime.clock.now_s()) if over else None
    return done[0] if len(done) == 1 else {"turns": done}


def next_turn(runtimes: Runtimes, turns: Turns, now_s: float) -> Runtime | None:
    """The account this deployment serves that has waited longest for a turn."""
    while (name := turns.next_waiting(now_s)) is not None:
        try:
            return runtimes.get(name)
        except UnknownAccount:  # removed from the file since: its entry went with it
            continue
    return None


def drain_turn(
    self: RuntimeTask, runtime: Runtime, queued_as: str, deadline_s: float
) -> tuple[dict[str, object], bool]:
    """One account's turn: its result, and whether it was over for another account."""
    hostname = self.request.hostname or ""
    with self.turns.acquire(
        runtime.dispatch,
        runtime.clock,
        hostname,
        queued_as,
        still_current=lambda: is_current(self.runtimes, runtime),
    ) as turn:
        if turn is None:
            stopped = (
                f"{runtime.dispatch.wanted()} drainers already running, or this worker is stopping"
            )
            return {"stopped": stopped}, False
        if not runtime.settings.has_credentials:
            log.error("ESMS_API_KEY and ESMS_SECRET_KEY are not set: nothing is sent; RefIds wait")
            return {"stopped": "no credentials"}, False
        report = run_drainer(self, runtime, turn, deadline_s)
    if turn.over:
        report.stopped = "its turn was over: other accounts wait"
    elif report.stopped == "budget used":  # its successor
        runtime.dispatch.request(runtime.clock.now_s(), force=True)
    if report.requests:
        log.info(
            "drain: %d requests, %d RefIds asked, %d events %s; stopped: %s",
            report.requests,
            report.refs_asked,
            report.events,
            report.by_status,
            report.stopped,
        )
    return asdict(report), turn.over


def is_current(runtimes: Runtimes, runtime: Runtime) -> bool:
    """Whether `runtime` is still its account's: not removed, its settings unchanged."""
    try:
        return runtimes.get(runtime.account) is runtime
    except UnknownAccount:
        return False


def run_drainer(self: RuntimeTask, runtime: Runtime, turn: Turn, deadline_s: float) -> DrainReport:
    """Drain for the rest of the task's budget; a transient failure becomes Celery's retry
    (what Flower shows as task-retried), unless this drain has retried enough."""
    settings, retries = runtime.settings, self.request.retries
    budget_s = max(0.0, deadline_s - time.monotonic())
    try:
        return runtime.drainer().drain(budget_s, keep_going=turn.keep_going)
    except Retry as exc:
        if drain_gives_up(retries, settings):
            log.warning(
                "eSMS request failed (%s) after %d retries of this drain; the RefIds wait "
                "and a later drain asks them",
                exc.cause,
                retries,
            )
            return DrainReport(stopped=f"gave up after {retries} retries: {exc.cause}")
        log.warning(
            "eSMS request failed (%s); retry %d/%d in %.1fs",
            exc.cause,
            retries + 1,
            settings.max_retries,
            exc.after_s,
        )
        # The account's own backoff (the breaker) decides when requests go again, not this
        # task's retry count. expires=None: a retry must not inherit the first send's expiry
        # and be revoked unrun.
        raise self.retry(
            exc=exc.cause,
            countdown=exc.after_s,
            max_retries=settings.max_retries,
            expires=None,
            kwargs={"account": runtime.account},  # the account of this turn
        ) from None


@app.task(name="esms.release", base=RuntimeTask, bind=True, ignore_result=True, send_events=False)
def release(self: RuntimeTask) -> None:
    """For every account: start drainers when its window is open and RefIds are due; warn
    about capacity. One account's trouble (its Redis shard away) leaves the others served.
    Beat's pulse, every few seconds: it sends Flower no task events (send_events=False; nor
    does beat send its task-sent, tasks/app.py), which would crowd the drains out of its list."""
    runtimes = self.runtimes
    # One pulse at a time: with many accounts a pulse may outlast the next one's arrival.
    with Lock(runtimes.shared.redis, RELEASE_LOCK, RELEASE_LOCK_S).acquire() as held:
        if not held:
            log.info("a release is still running: this pulse is skipped")
            return
        release_every(runtimes, int(time.time() / runtimes.book.base.release_every_s))


def release_every(runtimes_: Runtimes, pulse: int) -> None:
    runtimes = serving(runtimes_)
    for runtime in runtimes:
        turn = housekeeping_turn(runtime.account, len(runtimes), pulse)
        with for_account(runtime.account):
            try:
                release_account(runtime, housekeeping=turn)
            except RedisError as exc:
                log.warning("release failed (%s); the next pulse tries again", exc)


def housekeeping_turn(account: str, accounts: int, pulse: int) -> bool:
    """Whether beat's pulse number `pulse` does the account's housekeeping (its pulse mark,
    the sweep, the capacity warning): every pulse for a few accounts; past that, each
    account's once every HOUSEKEEPING_EVERY_PULSES pulses, spread by name, so that a thousand
    accounts' pulse stays short. Starting drains is checked every pulse for every account."""
    if accounts <= HOUSEKEEPING_EVERY_PULSE_UP_TO:
        return True
    spread = zlib.crc32(account.encode()) % HOUSEKEEPING_EVERY_PULSES
    return pulse % HOUSEKEEPING_EVERY_PULSES == spread


def release_account(runtime: Runtime, housekeeping: bool = True) -> None:
    now_s = runtime.clock.now_s()
    if housekeeping:
        # Beat's pulse, as a worker received it: `status` tells whether beat and workers run.
        runtime.stats.mark_beat_release(now_s)
        runtime.backlog.sweep(now_s)  # forget done RefIds past the done memory, a few buckets
        runtime.dispatch.check_capacity(now_s)
    if (
        runtime.settings.window.is_open(as_datetime(now_s))
        and not runtime.pause.blocked()
        and runtime.backlog.next_due_oa(now_s)
    ):
        runtime.dispatch.request(now_s)
