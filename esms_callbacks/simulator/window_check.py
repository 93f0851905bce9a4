"""Build the simulator's window check from an `ESMS_WINDOW`-style spec."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfoNotFoundError

from esms_callbacks.esms.window import Window

WindowCheck = Callable[[], bool]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def window_check(
    spec: str, zone: str = "Asia/Ho_Chi_Minh", now: Callable[[], datetime] = _utc_now
) -> WindowCheck | None:
    """Return an is_open callable for `spec`, or None for `always`.

    `spec` is `HH:MM[:SS]-HH:MM[:SS]` in `zone` (as esms.window parses it), `always`, or
    `closed` (simulator only: every request is outside the window). Raise ValueError if bad.
    """
    if spec.strip().lower() == "closed":
        return lambda: False
    try:
        window = Window.parse(spec, zone)
    except ZoneInfoNotFoundError as exc:  # a KeyError; callers expect ValueError for bad input
        raise ValueError(f"unknown time zone {zone!r}") from exc
    if window.always:
        return None
    return lambda: window.is_open(now())
