"""`esms-callbacks status`: the account's state in plain words, and the processes behind it.

The state snapshot (ops.status) comes from Redis; what only the broker knows (submissions
still queued, which workers answer and since when) is asked here, for people, not for metrics.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from amqp.exceptions import ChannelError

from esms_callbacks.settings import Settings

QUEUES = ("esms.fetch", "esms.drain")
PING_TIMEOUT_S = 1.0


def shown(value: object) -> str:
    """`value` as it may be printed on a terminal: text from outside (eSMS's messages, events,
    Redis, the broker) with its control characters escaped as Python writes them (\\x1b, \\n),
    so it can neither move the cursor nor start a line that looks like one of ours."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def process_state(settings: Settings, app: Any) -> dict[str, Any]:
    """Messages queued in the broker per queue, and the workers that answer (with uptime)."""

    queued: dict[str, int | None] = {}
    with settings.broker_connection(connect_timeout=5) as conn:
        # On Redis an empty queue is no key at all, so "not found" means 0 there.
        empty_is_missing = conn.transport.driver_type == "redis"
        for name in QUEUES:
            queued[name] = 0 if empty_is_missing else None
            with contextlib.suppress(ChannelError):  # AMQP: not declared yet
                ok = conn.default_channel.queue_declare(queue=name, passive=True)
                queued[name] = int(ok.message_count)
    stats = app.control.inspect(timeout=PING_TIMEOUT_S).stats() or {}
    now = datetime.now(UTC)
    workers = {
        name: (now - timedelta(seconds=int(info.get("uptime", 0)))).isoformat(timespec="seconds")
        for name, info in sorted(stats.items())
    }
    return {"queued_in_broker": queued, "workers_up_since": workers}


def render(state: dict[str, Any]) -> str:
    """The snapshot as lines a person reads."""
    name, keys = state.get("account_name", "default"), state["account"]
    lines = [
        f"account      {shown(name)}"
        + (f" (keys {shown(keys)}" if keys != name else " (")
        + f"named by {state['account_named_by']})"
    ]
    window = "open" if state["window_open"] else f"closed; opens {state['window_opens_at']}"
    lines.append(f"window       {state['window']}: {window}")
    fits = "fits in" if state["backlog_fits"] else "does NOT fit in"
    lines.append(
        f"backlog      {state['waiting_refs']:,} RefIds waiting; {fits} the coming window "
        f"({state['coming_window_capacity_refs']:,} RefIds)"
    )
    for oa in state["per_oa"]:
        lines.append(
            f"  OA {shown(oa['oa_id'])}: {oa['waiting']:,} waiting ({oa['due_now']:,} due now), "
            f"{oa['leased']:,} in a request"
        )
    paused = state["paused"]
    lines.append(
        f"eSMS         {'PAUSED: ' + shown(paused) if paused else 'not paused'}; " + _breaker(state)
    )
    rate = state["rate_used"]
    per_request = state["refs_per_request_last_minute"]
    lines.append(
        f"last minute  {state['requests_last_minute']} requests ({rate:.0%} of the allowed rate)"
        + (f", {per_request:g} RefIds each" if per_request else "")
    )
    lines.append(
        f"drainers     {state['drainers']} running, {state['drainers_wanted']} wanted"
        + (f"; a request takes {state['request_time_s']:.3f}s" if state["request_time_s"] else "")
    )
    pulse = state.get("beat_release_seconds_ago")
    lines.append(
        "beat         "
        + (
            f"last pulse reached a worker {pulse:g}s ago"
            if pulse is not None
            else "no pulse seen yet"
        )
    )
    processes = state.get("processes")
    if processes:
        queued = ", ".join(
            f"{name} {count if count is not None else 'not declared'}"
            for name, count in processes["queued_in_broker"].items()
        )
        lines.append(f"broker       queued: {queued}")
        workers = processes["workers_up_since"]
        lines.append(
            "workers      "
            + (
                "; ".join(f"{shown(name)} up since {since}" for name, since in workers.items())
                if workers
                else "none answered within 1 s"
            )
        )
    pushes = state.get("pushes") or {}
    lines.append(
        "pushes       "
        + (
            ", ".join(f"{shown(result)} {count:,}" for result, count in pushes.items())
            or "none received"
        )
        + f"; {state.get('push_inbox_waiting', 0):,} waiting to be applied"
    )
    if state.get("status_queue") is not None:  # the deployment's: with the first account
        lines.append("events       " + _status_queue(state["status_queue"]))
    counters = state["counters"]
    counted = ", ".join(f"{shown(name)} {value:,}" for name, value in sorted(counters.items()))
    lines.append(f"counters     {counted or 'nothing counted yet'}")
    return "\n".join(lines)


def _status_queue(queue: dict[str, Any]) -> str:
    name = shown(str(queue.get("name", "")))
    if not queue.get("default_queue", True):
        return f"default queue {name} off: events go to the queues bound to the exchange"
    text = f"{queue.get('events') or 0:,} waiting in {name}"
    if queue.get("consumers") is not None:
        text += f", {queue['consumers']} consumers"
    if queue.get("growing"):
        text += ", growing"
    warning = queue.get("warning")
    return text + (f"\nWARNING      {warning}" if warning else "")


def _breaker(state: dict[str, Any]) -> str:
    failures, backing_off = state["failures_in_a_row"], state["backing_off_for_s"]
    if backing_off:
        return f"backing off {backing_off:g}s after {failures} failures in a row"
    if failures:
        return f"{failures} failures in a row"
    margin = state["rate_margin_extra_s"]
    return "healthy" + (f"; rate margin +{margin * 1000:.0f} ms after Code 160s" if margin else "")
