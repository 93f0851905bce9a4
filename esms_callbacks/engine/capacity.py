"""How many RefIds the coming window can carry, and whether the backlog fits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.settings import Settings
from esms_callbacks.terms import Terms


@dataclass(frozen=True)
class Capacity:
    window_opens_at: datetime  # now, if the window is open
    window_closes_at: datetime | None  # None: always open
    open_s: float  # seconds of window left (open now) or in the next window; a day if always
    refs: int  # RefIds its seconds within the guards (ESMS_WINDOW_GUARD) carry at the limits

    def fits(self, backlog_refs: int) -> bool:
        return backlog_refs <= self.refs


def coming_window(settings: Settings, terms: Terms, now_s: float) -> Capacity:
    window = terms.drain_window
    now = as_datetime(now_s)
    if window.always:
        day_s = 86400.0
        return Capacity(now, None, day_s, terms.window_capacity_refs(day_s))
    opens_at = window.next_open(now)
    bounds = window.bounds_at(opens_at)
    assert bounds is not None
    opened_at, closes_at = bounds
    open_s = (closes_at - max(opens_at, now)).total_seconds()
    # Requests go out only between the guards, kept clear at both ends (engine.drainer).
    guard = timedelta(seconds=settings.window_guard_s)
    sendable_s = (closes_at - guard - max(opened_at + guard, now)).total_seconds()
    zone = window.zone  # operators read times in the window's own zone
    return Capacity(
        opens_at.astimezone(zone),
        closes_at.astimezone(zone),
        open_s,
        terms.window_capacity_refs(sendable_s),
    )


def describe_shortfall(capacity: Capacity, backlog_refs: int) -> str:
    nights = -(-backlog_refs // max(1, capacity.refs))
    return (
        f"backlog of {backlog_refs} RefIds exceeds the {capacity.refs} the coming window "
        f"({capacity.window_opens_at.isoformat()}, {timedelta(seconds=int(capacity.open_s))}"
        f" open) can carry at the current limits; about {nights} windows to clear it"
    )
