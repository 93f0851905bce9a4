"""esms.drain (send requests while RefIds are due) and esms.release (beat's heartbeat)."""

from __future__ import annotations

import logging
import time
import zlib
from contextlib import suppress
from dataclasses import asdict

from redis.exceptions import RedisError

from esms_callbacks.accounts import UnknownAccount
from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.errors import Retry
from esms_callbacks.ops.log_context import for_account
from esms_callbacks.retry_policy import DRAIN_TASK_RETRY, drain_gives_up
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import DEFAULT_ACCOUNT
from esms_callbacks.tasks.app import app
from esms_callbacks.tasks.context import RuntimeTask, serving
from esms_callbacks.tuning import (
    DRAIN_BUDGET_S,
    FAIR_TURN_S,
    HOUSEKEEPING_EVERY_PULSE_UP_TO,
    HOUSEKEEPING_EVERY_PULSES,
)

log = logging.getLogger(__name__)


@app.task(name="esms.drain", base=RuntimeTask, bind=True, acks_late=True, **DRAIN_TASK_RETRY)
def drain(self: RuntimeTask, account: str = DEFAULT_ACCOUNT) -> dict[str, object]:
    """Send one account's full requests at its global rate while its window is open and
    RefIds are due."""
    try:
        runtime = self.runtimes.get(account)
    except UnknownAccount as exc:  # removed from the accounts file since it was queued
        log.warning("drain not run: %s", exc)
        return {"stopped": "unknown account"}
    with for_account(runtime.account):
        return drain_account(self, runtime)


def drain_account(self: RuntimeTask, runtime: Runtime) -> dict[str, object]:
    settings = runtime.settings
    if not settings.has_credentials:
        log.error("ESMS_API_KEY and ESMS_SECRET_KEY are not set: nothing is sent; RefIds wait")
        return {"stopped": "no credentials"}
    runtime.dispatch.drain_started()  # started, even if every place is taken: not waiting
    slots, wanted = runtime.drainer_slots, runtime.drainers_wanted()
    # A warm shutdown of this worker (SIGTERM: a deploy) flags its hostname; the drain then
    # gives its place up at the next step instead of running out its budget.
    stopping = runtime.keys.stopping(self.request.hostname or "")
    token = slots.acquire(runtime.clock.now_s(), wanted, stopping_key=stopping)
    if token is None:
        return {"stopped": f"{wanted} drainers already running, or this worker is stopping"}
    retries = self.request.retries
    started_s = runtime.clock.now_s()
    turn_over = False

    def keep_going() -> bool:
        """Keep the place, unless this worker is stopping or another account's turn came."""
        nonlocal turn_over
        now_s = runtime.clock.now_s()
        if slots.acquire(now_s, wanted, token, stopping) is None:
            return False
        turn_over = now_s - started_s >= FAIR_TURN_S and runtime.dispatch.others_waiting(now_s)
        return not turn_over

    try:
        report = runtime.drainer().drain(DRAIN_BUDGET_S, keep_going=keep_going)
    except Retry as exc:
        if drain_gives_up(retries, settings):
            log.warning(
                "eSMS request failed (%s) after %d retries of this drain; the RefIds wait "
                "and a later drain asks them",
                exc.cause,
                retries,
            )
            return {"stopped": f"gave up after {retries} retries: {exc.cause}"}
        log.warning(
            "eSMS request failed (%s); retry %d/%d in %.1fs",
            exc.cause,
            retries + 1,
            settings.max_retries,
            exc.after_s,
        )
        # The retry is what Flower shows as task-retried. The account's own backoff (the
        # breaker) decides when requests go again, not this task's retry count.
        # expires=None: a retry must not inherit the first send's expiry and be revoked unrun.
        raise self.retry(
            exc=exc.cause, countdown=exc.after_s, max_retries=settings.max_retries, expires=None
        ) from None
    finally:
        with suppress(RedisError):  # unreachable Redis: the place frees itself when it expires
            slots.release(token)
    if turn_over:
        report.stopped = "its turn was over: other accounts wait"
    if report.stopped == "budget used" or turn_over:  # its successor queues behind the others
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
    return asdict(report)


@app.task(name="esms.release", base=RuntimeTask, bind=True, ignore_result=True)
def release(self: RuntimeTask) -> None:
    """For every account: start drainers when its window is open and RefIds are due; warn
    about capacity. One account's trouble (its Redis shard away) leaves the others served."""
    runtimes = serving(self.runtimes)
    pulse = int(time.time() / self.runtimes.book.base.release_every_s)
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
