"""The daily window in which eSMS accepts GetCallback requests.

`ESMS_WINDOW` is `HH:MM[:SS]-HH:MM[:SS]` in a time zone (it may cross midnight), or `always`.
All answers are computed from an aware datetime passed in, so callers choose the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

_ALWAYS = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
_TIME_OF_DAY = r"(\d{1,2}):(\d{2})(?::(\d{2}))?"
_WINDOW_RE = re.compile(rf"^\s*{_TIME_OF_DAY}\s*-\s*{_TIME_OF_DAY}\s*$")


@dataclass(frozen=True)
class Window:
    """A daily [opens, closes) interval in `zone`; `opens is None` means always open."""

    opens: time | None
    closes: time | None
    zone: tzinfo

    @classmethod
    def parse(cls, spec: str, zone: str | tzinfo = "Asia/Ho_Chi_Minh") -> Window:
        """Parse `HH:MM[:SS]-HH:MM[:SS]` or `always`; raise ValueError naming the problem."""
        tz = ZoneInfo(zone) if isinstance(zone, str) else zone
        if spec.strip().lower() == "always":
            return cls(None, None, tz)
        match = _WINDOW_RE.match(spec)
        if not match:
            raise ValueError(f"window {spec!r} is not HH:MM[:SS]-HH:MM[:SS] or 'always'")
        parts = [int(p) if p is not None else 0 for p in match.groups()]
        opens, closes = _time_of_day(parts[:3], spec), _time_of_day(parts[3:], spec)
        if opens == closes:
            raise ValueError(f"window {spec!r} opens and closes at the same time; use 'always'")
        return cls(opens, closes, tz)

    @property
    def always(self) -> bool:
        return self.opens is None

    def bounds_at(self, at: datetime) -> tuple[datetime, datetime] | None:
        """Return (opened_at, closes_at) in UTC of the window open at `at`, or None if closed."""
        if self.always:
            return _ALWAYS
        instant = at.astimezone(UTC)
        day = at.astimezone(self.zone).date()
        for day_offset in (0, -1):  # a window that crosses midnight may have opened yesterday
            opened, closes = self._bounds_on(day + timedelta(days=day_offset))
            if opened <= instant < closes:
                return opened, closes
        return None

    def is_open(self, at: datetime) -> bool:
        return self.always or self.bounds_at(at) is not None

    def next_open(self, at: datetime) -> datetime:
        """Return when the window is next open at or after `at` (`at` itself if open)."""
        if self.always or self.is_open(at):
            return at
        instant = at.astimezone(UTC)
        day = at.astimezone(self.zone).date()
        for day_offset in range(3):
            opened, closes = self._bounds_on(day + timedelta(days=day_offset))
            # A window wholly inside a daylight-saving gap does not happen that day.
            if opened > instant and closes > opened:
                return opened
        raise AssertionError(f"window {self} never opens after {at}")  # unreachable

    def seconds_open_between(self, start: datetime, end: datetime) -> float:
        """Return how many seconds of [start, end) fall inside the window."""
        if self.always:
            return max(0.0, (end - start).total_seconds())
        total, cursor = 0.0, start.astimezone(UTC)
        end = end.astimezone(UTC)
        while cursor < end:
            cursor = self.next_open(cursor)
            if cursor >= end:
                break
            bounds = self.bounds_at(cursor)
            assert bounds is not None
            stop = min(bounds[1], end)
            total += (stop - cursor).total_seconds()
            cursor = stop
        return total

    def _bounds_on(self, day: date) -> tuple[datetime, datetime]:
        """The window that opens on local `day`, as UTC instants (real elapsed time)."""
        assert self.opens is not None and self.closes is not None
        close_day = day if self.closes > self.opens else day + timedelta(days=1)
        return _instant(day, self.opens, self.zone), _instant(close_day, self.closes, self.zone)

    def __str__(self) -> str:
        if self.opens is None or self.closes is None:
            return "always"
        return f"{self.opens.isoformat()}-{self.closes.isoformat()} {self.zone}"


def _time_of_day(parts: list[int], spec: str) -> time:
    hours, minutes, seconds = parts
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"window {spec!r} has a time of day out of range")
    return time(hours, minutes, seconds)


def _instant(day: date, moment: time, zone: tzinfo) -> datetime:
    """The UTC instant of wall time `moment` on `day`; in a DST gap, the end of the gap."""
    wall = datetime.combine(day, moment, tzinfo=zone)
    instant = wall.astimezone(UTC)
    naive = wall.replace(tzinfo=None)
    if instant.astimezone(zone).replace(tzinfo=None) == naive:
        return instant
    # Clocks jumped over `moment` that day: the first minute after the jump.
    probe = min(instant, wall.replace(fold=1).astimezone(UTC))
    while probe.astimezone(zone).replace(tzinfo=None) < naive:
        probe += timedelta(minutes=1)
    return probe
