"""esms.drain (send requests while RefIds are due) and esms.release (beat's heartbeat)."""

from __future__ import annotations

import logging
import time
import uuid
import zlib
from contextlib import suppress
from dataclasses import asdict, dataclass

from redis.exceptions import RedisError

from esms_callbacks.accounts import DEFAULT_ACCOUNT
from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.engine.dispatch import next_waiting, wait_again
from esms_callbacks.engine.keys import RELEASE_LOCK
from esms_callbacks.errors import AccountNotServed, AccountUnavailable, Retry
from esms_callbacks.ops.log_context import for_account
from esms_callbacks.retry_policy import DRAIN_TASK_RETRY, drain_gives_up
from esms_callbacks.runtime import Runtime, Runtimes
from esms_callbacks.tasks.app import app
from esms_callbacks.tasks.context import RuntimeTask, serving
from esms_callbacks.tuning import (
    DRAIN_BUDGET_S,
    FAIR_TURN_S,
    HOUSEKEEPING_EVERY_PULSE_UP_TO,
    HOUSEKEEPING_EVERY_PULSES,
    RELEASE_LOCK_S,
)

log = logging.getLogger(__name__)


@dataclass
class Turn:
    """What one account's turn in a drain task came to."""

    result: dict[str, object]
    over: bool = False  # given up for another account waiting


@app.task(name="esms.drain", base=RuntimeTask, bind=True, acks_late=True, **DRAIN_TASK_RETRY)
def drain(
    self: RuntimeTask, account: str = DEFAULT_ACCOUNT, queued_as: str = ""
) -> dict[str, object]:
    """Send one account's full requests at its global rate while its window is open and
    RefIds are due; when its turn is over and other accounts wait (engine/dispatch.py:
    turns), go on with the one that has waited longest, within the task's budget."""
    try:
        runtime: Runtime | None = self.runtimes.get(account)
    except (AccountNotServed, AccountUnavailable) as exc:  # removed since it was queued
        log.warning("drain not run: %s", exc)
        return {"stopped": "unknown account"}
    deadline_s = time.monotonic() + DRAIN_BUDGET_S
    turns: list[dict[str, object]] = []
    while runtime is not None:
        runtime.dispatch.drain_started(queued_as)
        queued_as = ""
        with for_account(runtime.name):
            turn = drain_turn(self, runtime, deadline_s)
        turns.append({"account": runtime.name, **turn.result})
        runtime = next_turn(self.runtimes) if turn.over else None
    return turns[0] if len(turns) == 1 else {"turns": turns}


def next_turn(runtimes: Runtimes) -> Runtime | None:
    """The account that has waited longest for a turn, if this process serves it."""
    waiting = next_waiting(runtimes.shared.redis)
    if waiting is None:
        return None
    try:
        return runtimes.get(waiting[0])
    except (AccountNotServed, AccountUnavailable):  # another deployment's, or removed
        wait_again(runtimes.shared.redis, *waiting)
        return None


def drain_turn(self: RuntimeTask, runtime: Runtime, deadline_s: float) -> Turn:
    settings = runtime.settings
    if not runtime.account.secrets.has_credentials:
        log.error("ESMS_API_KEY and ESMS_SECRET_KEY are not set: nothing is sent; RefIds wait")
        return Turn({"stopped": "no credentials"})
    slots, wanted = runtime.drainer_slots, runtime.drainers_wanted()
    # A warm shutdown of this worker (SIGTERM: a deploy) flags its hostname; the drain then
    # gives its place up at the next step instead of running out its budget.
    stopping = runtime.keys.stopping(self.request.hostname or "")
    token = slots.acquire(runtime.clock.now_s(), wanted, stopping_key=stopping)
    if token is None:
        return Turn({"stopped": f"{wanted} drainers already running, or this worker is stopping"})
    retries = self.request.retries
    started_s = runtime.clock.now_s()
    turn_over = False

    def keep_going() -> bool:
        """Keep the place, unless this worker is stopping, the account's settings changed
        (a rotated key: the next drain uses the new one) or another account's turn came:
        after FAIR_TURN_S, or at once for a drainer beside others of its account."""
        nonlocal turn_over
        now_s = runtime.clock.now_s()
        if slots.acquire(now_s, wanted, token, stopping) is None:
            return False
        try:
            if self.runtimes.get(runtime.name) is not runtime:
                return False
        except (AccountNotServed, AccountUnavailable):  # removed from the accounts file
            return False
        if runtime.dispatch.others_waiting():
            turn_over = now_s - started_s >= FAIR_TURN_S or slots.holders(now_s) > 1
        return not turn_over

    budget_s = max(0.0, deadline_s - time.monotonic())
    try:
        report = runtime.drainer().drain(budget_s, keep_going=keep_going)
    except Retry as exc:
        if drain_gives_up(retries, settings):
            log.warning(
                "eSMS request failed (%s) after %d retries of this drain; the RefIds wait "
                "and a later drain asks them",
                exc.cause,
                retries,
            )
            return Turn({"stopped": f"gave up after {retries} retries: {exc.cause}"})
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
            exc=exc.cause,
            countdown=exc.after_s,
            max_retries=settings.max_retries,
            expires=None,
            kwargs={"account": runtime.name},  # the account of this turn
        ) from None
    finally:
        with suppress(RedisError):  # unreachable Redis: the place frees itself when it expires
            slots.release(token)
    now_s = runtime.clock.now_s()
    if turn_over:  # work is left: the account waits again, behind those waiting
        report.stopped = "its turn was over: other accounts wait"
        runtime.dispatch.wait_for_turn(now_s)
    elif report.stopped == "budget used":  # its successor
        runtime.dispatch.request(now_s, force=True)
    if report.requests:
        log.info(
            "drain: %d requests, %d RefIds asked, %d events %s; stopped: %s",
            report.requests,
            report.refs_asked,
            report.events,
            report.by_status,
            report.stopped,
        )
    return Turn(asdict(report), over=turn_over)


@app.task(name="esms.release", base=RuntimeTask, bind=True, ignore_result=True)
def release(self: RuntimeTask) -> None:
    """For every account: start drainers when its window is open and RefIds are due; warn
    about capacity. One account's trouble (its Redis shard away) leaves the others served."""
    client, pulse_s = self.runtimes.shared.redis, self.runtimes.book.settings.release_every_s
    # One pulse at a time: with many accounts a pulse may outlast the next one's arrival.
    holder = uuid.uuid4().hex
    if not client.set(RELEASE_LOCK, holder, nx=True, px=int(RELEASE_LOCK_S * 1000)):
        log.info("a release is still running: this pulse is skipped")
        return
    try:
        release_every(self.runtimes, int(time.time() / pulse_s))
    finally:
        with suppress(RedisError):
            if client.get(RELEASE_LOCK) == holder.encode():
                client.delete(RELEASE_LOCK)


def release_every(runtimes_: Runtimes, pulse: int) -> None:
    runtimes = serving(runtimes_)
    for runtime in runtimes:
        turn = housekeeping_turn(runtime.name, len(runtimes), pulse)
        with for_account(runtime.name):
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
        runtime.terms.window.is_open(as_datetime(now_s))
        and not runtime.pause.blocked()
        and runtime.backlog.next_due_oa(now_s)
    ):
        runtime.dispatch.request(now_s)
