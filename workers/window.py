"""The daily window in which eSMS accepts GetCallback requests.

`ESMS_WINDOW` is `HH:MM[:SS]-HH:MM[:SS]` in a time zone (it may cross midnight), or `always`.
All answers are computed from an aware datetime passed in, so callers choose the clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
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
        """Return (opened_at, closes_at) of the window open at `at`, or None if it is closed."""
        if self.opens is None or self.closes is None:
            return _ALWAYS
        local = at.astimezone(self.zone)
        for day_offset in (0, -1):  # a window that crosses midnight may have opened yesterday
            opened = self._at_day(local, day_offset, self.opens)
            closes = opened + self._length
            if opened <= local < closes:
                return opened, closes
        return None

    def is_open(self, at: datetime) -> bool:
        return self.always or self.bounds_at(at) is not None

    def next_open(self, at: datetime) -> datetime:
        """Return when the window is next open at or after `at` (`at` itself if open)."""
        if self.always or self.is_open(at):
            return at
        assert self.opens is not None
        local = at.astimezone(self.zone)
        opened = self._at_day(local, 0, self.opens)
        return opened if opened > local else self._at_day(local, 1, self.opens)

    def seconds_open_between(self, start: datetime, end: datetime) -> float:
        """Return how many seconds of [start, end) fall inside the window."""
        if self.always:
            return max(0.0, (end - start).total_seconds())
        total, cursor = 0.0, start
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

    @property
    def _length(self) -> timedelta:
        assert self.opens is not None and self.closes is not None
        length = _seconds(self.closes) - _seconds(self.opens)
        return timedelta(seconds=length if length > 0 else length + 86400)

    def _at_day(self, local: datetime, day_offset: int, moment: time) -> datetime:
        day = (local + timedelta(days=day_offset)).date()
        return datetime.combine(day, moment, tzinfo=self.zone)

    def __str__(self) -> str:
        if self.opens is None or self.closes is None:
            return "always"
        return f"{self.opens.isoformat()}-{self.closes.isoformat()} {self.zone}"


def _time_of_day(parts: list[int], spec: str) -> time:
    hours, minutes, seconds = parts
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"window {spec!r} has a time of day out of range")
    return time(hours, minutes, seconds)


def _seconds(moment: time) -> int:
    return moment.hour * 3600 + moment.minute * 60 + moment.second
