"""A snapshot of an account's state, for the CLI, logs and metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from workers.capacity import coming_window
from workers.clock import as_datetime
from workers.runtime import Runtime


def account_state(runtime: Runtime, now_s: float) -> dict[str, Any]:
    """Waiting RefIds per OA, the window, capacity against backlog, pause, counters."""
    settings, keys = runtime.settings, runtime.keys
    per_oa = runtime.backlog.per_oa(now_s)
    capacity = coming_window(settings, now_s)
    waiting = sum(oa.waiting + oa.leased for oa in per_oa)
    counters = {_text(k): int(v) for k, v in runtime.redis.hgetall(keys.stats).items()}
    paused = runtime.redis.get(keys.paused)
    return {
        "account": settings.account_id,
        "window": str(settings.window),
        "window_open": settings.window.is_open(as_datetime(now_s)),
        "window_opens_at": capacity.window_opens_at.isoformat(),
        "window_closes_at": capacity.window_closes_at.isoformat()
        if capacity.window_closes_at
        else None,
        "coming_window_capacity_refs": capacity.refs,
        "waiting_refs": waiting,
        "backlog_fits": capacity.fits(waiting),
        "paused": _text(paused) if paused else None,
        "drainers": runtime.drainer_slots.holders(now_s),
        "per_oa": [asdict(oa) for oa in per_oa],
        "counters": counters,
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
