"""Prometheus text exposition of an account's state (see workers/status.py)."""

from __future__ import annotations

from typing import Any

# name, type, help, key in the state snapshot
GAUGES = [
    ("esms_waiting_refs", "RefIds waiting or in a request", "waiting_refs"),
    ("esms_window_open", "1 while the eSMS window is open", "window_open"),
    (
        "esms_window_capacity_refs",
        "RefIds the coming window can carry",
        "coming_window_capacity_refs",
    ),
    ("esms_backlog_fits", "1 if the backlog fits in the coming window", "backlog_fits"),
    ("esms_account_paused", "1 while eSMS refuses the account (auth, balance)", "paused"),
    (
        "esms_failures_in_a_row",
        "transient eSMS failures since the last success",
        "failures_in_a_row",
    ),
    (
        "esms_backing_off_seconds",
        "seconds the breaker still holds requests back",
        "backing_off_for_s",
    ),
    (
        "esms_rate_margin_extra_seconds",
        "margin added after Code 160s (fades)",
        "rate_margin_extra_s",
    ),
    ("esms_drainers", "worker processes sending requests now", "drainers"),
    ("esms_drainers_wanted", "drainers the interval and request time call for", "drainers_wanted"),
    ("esms_request_seconds", "recent requests' time from slot to settled", "request_time_s"),
    ("esms_requests_last_minute", "requests sent in the last 60 s", "requests_last_minute"),
    ("esms_rate_used", "requests in the last 60 s / the allowed number", "rate_used"),
    ("esms_push_inbox_waiting", "pushes recorded, not yet applied", "push_inbox_waiting"),
]
COUNTERS = {  # counter name in Redis -> metric
    "requests": ("esms_requests_total", "GetCallback requests sent"),
    "refs_asked": ("esms_refs_asked_total", "RefIds asked in requests"),
}


def render(state: dict[str, Any]) -> str:
    """Render the snapshot; every series carries the account label."""
    account = _label("account", state["account"])
    lines: list[str] = []
    for name, help_text, key in GAUGES:
        value = state.get(key)
        number = float(bool(value)) if key in ("window_open", "backlog_fits", "paused") else value
        lines += [
            f"# HELP {name} {help_text}",
            f"# TYPE {name} gauge",
            f"{name}{{{account}}} {_number(number)}",
        ]
    for per_oa, help_text in [
        ("waiting", "RefIds waiting, by OA"),
        ("due_now", "RefIds due now, by OA"),
        ("leased", "RefIds in a request now, by OA"),
    ]:
        name = f"esms_oa_{per_oa}_refs"
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for oa in state["per_oa"]:
            lines.append(f"{name}{{{account},{_label('oa_id', oa['oa_id'])}}} {oa[per_oa]}")
    counters: dict[str, int] = state["counters"]
    for key, (name, help_text) in COUNTERS.items():
        lines += [
            f"# HELP {name} {help_text}",
            f"# TYPE {name} counter",
            f"{name}{{{account}}} {counters.get(key, 0)}",
        ]
    for prefix, name, label, help_text in [
        ("events:", "esms_events_total", "status", "status events published, by status"),
        ("errors:", "esms_errors_total", "code", "failed requests, by eSMS code or error kind"),
        ("pushes:", "esms_pushes_total", "result", "pushes received, by the receiver's answer"),
        (
            "pushes_applied:",
            "esms_pushes_applied_total",
            "outcome",
            "recorded pushes applied: published, duplicate (already terminal), ignored",
        ),
    ]:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        for key, value in sorted(counters.items()):
            if key.startswith(prefix):
                lines.append(f"{name}{{{account},{_label(label, key[len(prefix) :])}}} {value}")
    return "\n".join(lines) + "\n"


def _label(name: str, value: object) -> str:
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


def _number(value: object) -> str:
    if value is None:
        return "NaN"
    return repr(float(value)) if isinstance(value, float) else str(value)
