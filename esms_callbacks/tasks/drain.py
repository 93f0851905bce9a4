"""esms.drain (send requests while RefIds are due) and esms.release (beat's heartbeat)."""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import asdict

from redis.exceptions import RedisError

from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.errors import Retry
from esms_callbacks.retry_policy import DRAIN_TASK_RETRY, drain_gives_up
from esms_callbacks.tasks.app import app
from esms_callbacks.tasks.context import RuntimeTask
from esms_callbacks.tuning import DRAIN_BUDGET_S

log = logging.getLogger(__name__)


@app.task(name="esms.drain", base=RuntimeTask, bind=True, acks_late=True, **DRAIN_TASK_RETRY)
def drain(self: RuntimeTask) -> dict[str, object]:
    """Send full requests at the global rate while the window is open and RefIds are due."""
    runtime = self.runtime
    settings = runtime.settings
    if not settings.has_credentials:
        log.error("ESMS_API_KEY and ESMS_SECRET_KEY are not set: nothing is sent; RefIds wait")
        return {"stopped": "no credentials"}
    slots, wanted = runtime.drainer_slots, runtime.drainers_wanted()
    # A warm shutdown of this worker (SIGTERM: a deploy) flags its hostname; the drain then
    # gives its place up at the next step instead of running out its budget.
    stopping = runtime.keys.stopping(self.request.hostname or "")
    token = slots.acquire(runtime.clock.now_s(), wanted, stopping_key=stopping)
    if token is None:
        return {"stopped": f"{wanted} drainers already running, or this worker is stopping"}
    retries = self.request.retries
    try:
        report = runtime.drainer().drain(
            DRAIN_BUDGET_S,
            keep_going=lambda: (
                slots.acquire(runtime.clock.now_s(), wanted, token, stopping) is not None
            ),
        )
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
    if report.stopped == "budget used":
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
    """Start drainers when the window is open and RefIds are due; warn about capacity."""
    runtime = self.runtime
    if not runtime.settings.account_known:
        return  # nothing can be filed or sent; the worker said so when it started
    now_s = runtime.clock.now_s()
    # Beat's pulse, as a worker received it: `status` tells whether beat and workers run.
    runtime.stats.mark_beat_release(now_s)
    runtime.backlog.sweep(now_s)  # forget done RefIds past the done memory, a few buckets a time
    runtime.dispatch.check_capacity(now_s)
    if (
        runtime.settings.window.is_open(as_datetime(now_s))
        and not runtime.pause.blocked()
        and runtime.backlog.next_due_oa(now_s)
    ):
        runtime.dispatch.request(now_s)
