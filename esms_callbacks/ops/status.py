"""A snapshot of an account's state, for the CLI, logs and metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import redis

from esms_callbacks.engine.capacity import coming_window
from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.engine.stats import (
    RECONCILE_NEVER_SUBMITTED,
    RECONCILE_NO_DATA,
    RECONCILE_SWEPT_AT,
)
from esms_callbacks.events.publish import queue_depth
from esms_callbacks.runtime import Runtime, Runtimes

RATE_WINDOW_S = 60.0  # "rate used" is measured over the last minute


def account_state(runtime: Runtime, now_s: float, with_status_queue: bool = True) -> dict[str, Any]:
    """Waiting RefIds per OA, the window, capacity against backlog, pause, counters; and
    the deployment's status queue unless left out (it is every account's: shown once)."""
    account, terms = runtime.account, runtime.terms
    per_oa = runtime.backlog.per_oa(now_s)
    capacity = coming_window(runtime.settings, terms, now_s)
    waiting = sum(oa.waiting + oa.leased for oa in per_oa)
    stats = runtime.stats.snapshot()
    counters = stats.counters
    paused = runtime.pause.reason()
    breaker = runtime.breaker.state()
    recent = runtime.stats.recent_requests(since_s=now_s - RATE_WINDOW_S)  # RefIds in each
    allowed = RATE_WINDOW_S / terms.rate_interval_s
    return {
        "account": account.key_id,
        "account_name": account.name,
        "account_named_by": account.named_by,
        "window": str(terms.window),
        "window_open": terms.window.is_open(as_datetime(now_s)),
        "window_opens_at": capacity.window_opens_at.isoformat(),
        "window_closes_at": capacity.window_closes_at.isoformat()
        if capacity.window_closes_at
        else None,
        "coming_window_capacity_refs": capacity.refs,
        "waiting_refs": waiting,
        "backlog_fits": capacity.fits(waiting),
        "paused": paused,
        "failures_in_a_row": int(breaker["failures_in_a_row"]),
        "backing_off_for_s": round(max(0.0, breaker["open_until_s"] - now_s), 3),
        "rate_margin_extra_s": round(runtime.limiter.added_margin_s(), 6),
        "drainers": runtime.drainer_slots.holders(now_s),
        "drainers_wanted": runtime.drainers_wanted(),
        "request_time_s": stats.request_time_s,
        "per_oa": [asdict(oa) for oa in per_oa],
        "requests_last_minute": len(recent),
        "rate_used": round(len(recent) / allowed, 3),
        "refs_per_request_last_minute": round(sum(recent) / len(recent), 1) if recent else None,
        "push_inbox_waiting": runtime.inbox.waiting(),
        "pushes": {
            name.split(":", 1)[1]: count
            for name, count in sorted(counters.items())
            if name.startswith("pushes:")
        },
        "beat_release_seconds_ago": round(now_s - stats.beat_release_at_s, 1)
        if stats.beat_release_at_s is not None
        else None,
        "status_queue": status_queue_state(runtime, now_s) if with_status_queue else None,
        "reconcile": terms.reconcile,
        # what the last sweep of eSMS's ledger found (None before any)
        "reconcile_never_submitted": counters.get(RECONCILE_NEVER_SUBMITTED),
        "reconcile_no_data_at_esms": counters.get(RECONCILE_NO_DATA),
        "reconcile_swept_seconds_ago": round(now_s - counters[RECONCILE_SWEPT_AT], 1)
        if RECONCILE_SWEPT_AT in counters
        else None,
        "counters": counters,
    }


def status_queue_state(runtime: Runtime, now_s: float) -> dict[str, Any]:
    """The default status queue: how many events wait in it, its consumers where the broker
    tells (RabbitMQ), and a warning when it grows with nobody reading it."""
    settings = runtime.settings
    state: dict[str, Any] = {
        "name": settings.status_queue,
        "default_queue": settings.status_default_queue,
        "events": None,
        "consumers": None,
        "growing": None,
        "warning": "",
    }
    if not settings.status_default_queue:
        return state
    with settings.broker_connection(connect_timeout=5) as connection:
        events, consumers = queue_depth(connection, settings.status_queue)
    try:
        previous = runtime.stats.sample_status_queue(events, now_s)
    except redis.RedisError:  # a full Redis must still show its status
        previous = None
    growing = previous is not None and events > previous
    unread = consumers == 0 or (consumers is None and growing)
    if events >= settings.status_queue_warn_events and unread:
        state["warning"] = (
            f"{events} events wait in {settings.status_queue!r} and nobody reads it: they "
            "fill the broker (and, on Redis, the memory the waiting RefIds need). Consume it, "
            "or set ESMS_STATUS_DEFAULT_QUEUE=off if your consumers read queues of their own "
            "bound to the exchange"
        )
    state.update(events=events, consumers=consumers, growing=growing)
    return state


def accounts_state(runtimes: Runtimes, only: str = "") -> list[dict[str, Any]]:
    """Every account's snapshot in name order (or the one named `only`: AccountNotServed if
    there is none), each on its Redis clock; the status queue in the first one's."""
    chosen = [runtimes.get(only)] if only else runtimes.all()
    return [
        account_state(rt, rt.clock.now_s(), with_status_queue=i == 0) for i, rt in enumerate(chosen)
    ]
