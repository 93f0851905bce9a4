"""A snapshot of an account's state, for the CLI, logs and metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from esms_callbacks.workers.capacity import coming_window
from esms_callbacks.workers.clock import as_datetime
from esms_callbacks.workers.runtime import Runtime

RATE_WINDOW_S = 60.0  # "rate used" is measured over the last minute


def account_state(runtime: Runtime, now_s: float) -> dict[str, Any]:
    """Waiting RefIds per OA, the window, capacity against backlog, pause, counters."""
    settings, keys = runtime.settings, runtime.keys
    per_oa = runtime.backlog.per_oa(now_s)
    capacity = coming_window(settings, now_s)
    waiting = sum(oa.waiting + oa.leased for oa in per_oa)
    stats = {_text(k): _text(v) for k, v in runtime.redis.hgetall(keys.stats).items()}
    request_time_s = stats.pop("request_time_s", None)
    beat_release_at_s = stats.pop("beat_release_at_s", None)
    counters = {name: int(value) for name, value in stats.items()}
    paused = runtime.redis.get(keys.paused)
    breaker = runtime.breaker.state()
    margin_extra_us = runtime.redis.hget(keys.rate, "extra_us")
    recent = [
        int(_text(member).rsplit(":", 1)[1])  # RefIds in that request
        for member in runtime.redis.zrangebyscore(keys.recent, now_s - RATE_WINDOW_S, "+inf")
    ]
    allowed = RATE_WINDOW_S / settings.rate_interval_s
    return {
        "account": settings.account_id,
        "account_named_by": settings.account_source,
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
        "failures_in_a_row": int(breaker["failures_in_a_row"]),
        "backing_off_for_s": round(max(0.0, breaker["open_until_s"] - now_s), 3),
        "rate_margin_extra_s": round(float(margin_extra_us or 0) / 1e6, 6),
        "drainers": runtime.drainer_slots.holders(now_s),
        "drainers_wanted": runtime.drainers_wanted(),
        "request_time_s": float(request_time_s) if request_time_s else None,
        "per_oa": [asdict(oa) for oa in per_oa],
        "requests_last_minute": len(recent),
        "rate_used": round(len(recent) / allowed, 3),
        "refs_per_request_last_minute": round(sum(recent) / len(recent), 1) if recent else None,
        "push_inbox_waiting": int(runtime.redis.xlen(keys.pushes)),
        "pushes": {
            name.split(":", 1)[1]: count
            for name, count in sorted(counters.items())
            if name.startswith("pushes:")
        },
        "beat_release_seconds_ago": round(now_s - float(beat_release_at_s), 1)
        if beat_release_at_s
        else None,
        "counters": counters,
    }


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value
