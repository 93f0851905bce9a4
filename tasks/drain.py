"""esms.drain (send requests while RefIds are due) and esms.release (beat's heartbeat)."""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import asdict

from celery import Task
from redis.exceptions import RedisError

from esms_callbacks.tasks.app import app
from esms_callbacks.workers.capacity import coming_window, describe_shortfall
from esms_callbacks.workers.clock import as_datetime
from esms_callbacks.workers.drainer import Retry
from esms_callbacks.workers.runtime import Runtime, get_runtime

log = logging.getLogger(__name__)

# A drain task gives its worker slot back this often, so restarts and deploys are prompt;
# if work remains it asks for a successor.
DRAIN_BUDGET_S = 60.0
CAPACITY_WARNING_EVERY_S = 600


@app.task(
    name="esms.drain",
    bind=True,
    acks_late=True,
    autoretry_for=(RedisError,),
    retry_backoff=1,
    retry_backoff_max=60,
    max_retries=5,
)
def drain(self: Task) -> dict[str, object]:
    """Send full requests at the global rate while the window is open and RefIds are due."""
    runtime = get_runtime()
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
        if retries >= settings.max_retries:
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
        request_drainers(runtime, runtime.clock.now_s(), force=True)
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


@app.task(name="esms.release", ignore_result=True)
def release() -> None:
    """Start drainers when the window is open and RefIds are due; warn about capacity."""
    runtime = get_runtime()
    if not runtime.settings.account_known:
        return  # nothing can be filed or sent; the worker said so when it started
    now_s = runtime.clock.now_s()
    # Beat's pulse, as a worker received it: `status` tells whether beat and workers run.
    runtime.redis.hset(runtime.keys.stats, "beat_release_at_s", f"{now_s:.3f}")
    check_capacity(runtime, now_s)
    if (
        runtime.settings.window.is_open(as_datetime(now_s))
        and not runtime.account_blocked()
        and runtime.backlog.next_due_oa(now_s)
    ):
        request_drainers(runtime, now_s)


def request_drainers(runtime: Runtime, now_s: float, force: bool = False) -> int:
    """Queue drain tasks up to the number of drainers wanted; return how many."""
    keys = runtime.keys
    # Many producers may ask at once; one asking per second is enough.
    if not force and not runtime.redis.set(keys.spawn_lock, 1, nx=True, px=1000):
        return 0
    missing = runtime.drainers_wanted() - runtime.drainer_slots.holders(now_s)
    for _ in range(max(0, missing)):
        drain.apply_async(expires=60)
    return max(0, missing)


def check_capacity(runtime: Runtime, now_s: float) -> None:
    """Warn (at most every ten minutes) when the backlog exceeds the coming window."""
    waiting = sum(oa.waiting + oa.leased for oa in runtime.backlog.per_oa(now_s))
    capacity = coming_window(runtime.settings, now_s)
    if capacity.fits(waiting):
        return
    if runtime.redis.set(runtime.keys.capacity_warned, 1, nx=True, ex=CAPACITY_WARNING_EVERY_S):
        log.warning(describe_shortfall(capacity, waiting))
