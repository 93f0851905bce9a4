"""esms.drain (send requests while RefIds are due) and esms.release (beat's heartbeat): glue
between Celery and the engine. A drain looks its account up, takes its turn on the pool
(engine/turns.py), runs the drainer and maps a transient failure to Celery's retry."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict

from redis.exceptions import RedisError

from esms_callbacks.accounts import DEFAULT_ACCOUNT
from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.engine.drainer import DrainReport
from esms_callbacks.engine.keys import RELEASE_LOCK
from esms_callbacks.engine.locks import Lock
from esms_callbacks.engine.turns import Turn, Turns
from esms_callbacks.errors import AccountNotServed, AccountUnavailable, Retry
from esms_callbacks.ops.log_context import for_account
from esms_callbacks.retry_policy import DRAIN_TASK_RETRY, drain_gives_up
from esms_callbacks.runtime import Runtime, Runtimes
from esms_callbacks.tasks.app import app
from esms_callbacks.tasks.context import RuntimeTask, serving
from esms_callbacks.tuning import (
    DRAIN_BUDGET_S,
    HOUSEKEEPING_EVERY_PULSE_UP_TO,
    HOUSEKEEPING_EVERY_PULSES,
    RELEASE_LOCK_RENEW_EVERY,
    RELEASE_LOCK_S,
)

log = logging.getLogger(__name__)
BUDGET_USED = "budget used"  # the drainer's reason: the task ends (its successor is queued)


@app.task(name="esms.drain", base=RuntimeTask, bind=True, acks_late=True, **DRAIN_TASK_RETRY)
def drain(
    self: RuntimeTask, account: str = DEFAULT_ACCOUNT, queued_as: str = ""
) -> dict[str, object]:
    """Send full requests at an account's global rate while its window is open and RefIds
    are due: first the account that has waited longest for a turn on the pool (the one the
    task was queued for if none waits longer: engine/turns.py), then, each time a turn ends,
    the next one waiting, within the task's budget."""
    try:
        queued = self.runtimes.get(account)
    except (AccountNotServed, AccountUnavailable) as exc:  # removed since it was queued
        log.warning("drain not run: %s", exc)
        return {"stopped": "unknown account"}
    queued.dispatch.dequeue(queued_as)
    deadline_s = time.monotonic() + DRAIN_BUDGET_S
    runtime: Runtime | None = next_turn(self.runtimes, self.turns, queued.clock.now_s()) or queued
    done: list[dict[str, object]] = []
    while runtime is not None:
        with for_account(runtime.name):
            result, goes_on = drain_turn(self, runtime, deadline_s)
        done.append({"account": runtime.name, **result})
        # A turn handed over is a whole one: one cut short by this task's budget would send
        # its account to the back (its successor queued) having had next to nothing.
        goes_on = goes_on and time.monotonic() + self.turns.fair_turn_s <= deadline_s
        runtime = next_turn(self.runtimes, self.turns, runtime.clock.now_s()) if goes_on else None
    return done[0] if len(done) == 1 else {"turns": done}


def next_turn(runtimes: Runtimes, turns: Turns, now_s: float) -> Runtime | None:
    """The account this deployment serves that has waited longest for a turn, if any."""
    while (name := turns.next_waiting(now_s)) is not None:
        try:
            return runtimes.get(name)
        except (
            AccountNotServed,
            AccountUnavailable,
        ):  # removed from the file since: its entry went with it
            continue
    return None


def drain_turn(
    self: RuntimeTask, runtime: Runtime, deadline_s: float
) -> tuple[dict[str, object], bool]:
    """One account's turn: its result, and whether the task may go on with another account
    (not once its budget is used or its worker is stopping)."""
    hostname = self.request.hostname or ""
    with self.turns.acquire(
        runtime.dispatch,
        runtime.clock,
        hostname,
        still_current=lambda: is_current(self.runtimes, runtime),
    ) as turn:
        if turn is None:
            stopped = (
                f"{runtime.dispatch.wanted()} drainers already running, or this worker is stopping"
            )
            return {"stopped": stopped}, False
        if not runtime.account.secrets.has_credentials:
            log.error("ESMS_API_KEY and ESMS_SECRET_KEY are not set: nothing is sent; RefIds wait")
            return {"stopped": "no credentials"}, True
        report = run_drainer(self, runtime, turn, deadline_s)
    if turn.over:
        report.stopped = "its turn was over: other accounts wait"
    elif report.stopped == BUDGET_USED:  # its successor
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
    return asdict(report), not turn.lost and report.stopped != BUDGET_USED


def is_current(runtimes: Runtimes, runtime: Runtime) -> bool:
    """Whether `runtime` is still its account's: not removed, its settings unchanged."""
    try:
        return runtimes.get(runtime.name) is runtime
    except (AccountNotServed, AccountUnavailable):
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
            kwargs={"account": runtime.name},  # the account of this turn
        ) from None


@app.task(name="esms.release", base=RuntimeTask, bind=True, ignore_result=True, send_events=False)
def release(self: RuntimeTask) -> None:
    """For every account: start drainers when its window is open and RefIds are due; warn
    about capacity. One account's trouble (its Redis shard away) leaves the others served.
    Beat's pulse, every few seconds: it sends Flower no task events (send_events=False; nor
    does beat send its task-sent, tasks/app.py), which would crowd the drains out of its list."""
    runtimes = self.runtimes
    # One pulse at a time: with many accounts a pulse may outlast the next one's arrival.
    lock = Lock(runtimes.shared.redis, RELEASE_LOCK, RELEASE_LOCK_S)
    with lock.acquire() as held:
        if not held:
            log.info("a release is still running: this pulse is skipped")
            return
        pulse = int(time.time() / runtimes.book.settings.release_every_s)
        release_every(runtimes, self.turns, pulse, still_held=lock.extend)


def release_every(
    runtimes_: Runtimes, turns: Turns, pulse: int, still_held: Callable[[], bool] = lambda: True
) -> None:
    runtimes = serving(runtimes_)
    if runtimes:
        with suppress(RedisError):  # the accounts waiting for a turn still wait
            turns.renew(runtimes[0].clock.now_s())
    for n, runtime in enumerate(runtimes):
        if n and n % RELEASE_LOCK_RENEW_EVERY == 0 and not keeps_lock(still_held):
            log.warning("this release lost its lock after %d accounts: it stops", n)
            return
        turn = housekeeping_turn(runtime.name, len(runtimes), pulse)
        with for_account(runtime.name):
            try:
                release_account(runtime, housekeeping=turn)
            except RedisError as exc:
                log.warning("release failed (%s); the next pulse tries again", exc)


def keeps_lock(still_held: Callable[[], bool]) -> bool:
    """Whether the pulse still holds its lock (its TTL renewed): else another pulse runs."""
    try:
        return still_held()
    except RedisError:  # the accounts' own calls fail and are logged just after
        return True


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
        runtime.terms.drain_window.is_open(as_datetime(now_s))
        and not runtime.pause.blocked()
        and runtime.backlog.next_due_oa(now_s)
    ):
        runtime.dispatch.request(now_s)
