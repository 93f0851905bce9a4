"""The daily eSMS window: parsing, open/closed at a moment, next opening, open seconds."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from esms_callbacks.esms.window import Window

VN = ZoneInfo("Asia/Ho_Chi_Minh")  # UTC+7 all year
BERLIN = ZoneInfo("Europe/Berlin")  # CET +1, CEST +2; 2024 switches on 31 March and 27 October


def vn(*parts: int) -> datetime:
    return datetime(*parts).replace(tzinfo=VN)  # type: ignore[arg-type]


def utc(*parts: int) -> datetime:
    return datetime(*parts).replace(tzinfo=UTC)  # type: ignore[arg-type]


def open_seconds_sampled(window: Window, start: datetime, end: datetime) -> float:
    """Count the minutes of [start, end), stepped on the UTC clock, at which is_open says yes."""
    cursor, total = start.astimezone(UTC), 0.0
    while cursor < end:
        total += 60.0 if window.is_open(cursor) else 0.0
        cursor += timedelta(minutes=1)
    return total


DEFAULT = Window.parse("01:00-02:00")
OVERNIGHT = Window.parse("23:00-01:00")


# --- parse ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "opens", "closes"),
    [
        ("01:00-02:00", time(1, 0), time(2, 0)),
        ("1:00-2:00", time(1, 0), time(2, 0)),
        (" 23:30 - 00:15 ", time(23, 30), time(0, 15)),
        ("01:00:30-01:59:59", time(1, 0, 30), time(1, 59, 59)),
        ("00:00-23:59:59", time(0, 0), time(23, 59, 59)),
        ("22:00:05-02:00", time(22, 0, 5), time(2, 0)),
    ],
)
def test_parse_reads_hh_mm_and_hh_mm_ss(spec, opens, closes):
    # given a window spec; when parsed
    window = Window.parse(spec)
    # expect its times of day, in Vietnam time by default
    assert (window.opens, window.closes, window.always) == (opens, closes, False)
    assert str(window.zone) == "Asia/Ho_Chi_Minh"


@pytest.mark.parametrize("spec", ["always", "ALWAYS", "  Always  "])
def test_parse_always_means_no_window(spec):
    window = Window.parse(spec)
    assert window.always
    assert (window.opens, window.closes) == (None, None)
    assert str(window) == "always"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "is not HH:MM[:SS]-HH:MM[:SS] or 'always'"),
        ("01:00", "is not HH:MM"),
        ("01:00-", "is not HH:MM"),
        ("1-2", "is not HH:MM"),
        ("01.00-02.00", "is not HH:MM"),
        ("01:0-02:00", "is not HH:MM"),
        ("01:00-02:00-03:00", "is not HH:MM"),
        ("1am-2am", "is not HH:MM"),
        ("never", "is not HH:MM"),
        ("24:00-01:00", "out of range"),
        ("01:60-02:00", "out of range"),
        ("01:00:60-02:00", "out of range"),
        ("01:00-02:00:99", "out of range"),
        ("01:00-01:00", "use 'always'"),
        ("01:00-01:00:00", "use 'always'"),
    ],
)
def test_parse_rejects_a_bad_spec_naming_it(spec, problem):
    with pytest.raises(ValueError) as caught:
        Window.parse(spec)
    assert repr(spec) in str(caught.value)
    assert problem in str(caught.value)


def test_parse_takes_a_zone_name_or_a_zone_object():
    assert Window.parse("01:00-02:00", BERLIN).zone is BERLIN
    assert str(Window.parse("01:00-02:00", "Europe/Berlin").zone) == "Europe/Berlin"


def test_str_names_the_times_and_the_zone():
    assert str(Window.parse("23:00-01:30:15")) == "23:00:00-01:30:15 Asia/Ho_Chi_Minh"
    assert str(Window.parse("01:00-02:00", BERLIN)) == "01:00:00-02:00:00 Europe/Berlin"


# --- bounds_at and is_open -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "at", "expected"),
    [
        (DEFAULT, vn(2024, 5, 10, 0, 59, 59), None),
        (DEFAULT, vn(2024, 5, 10, 1), (vn(2024, 5, 10, 1), vn(2024, 5, 10, 2))),
        (DEFAULT, vn(2024, 5, 10, 1, 59, 59), (vn(2024, 5, 10, 1), vn(2024, 5, 10, 2))),
        (DEFAULT, vn(2024, 5, 10, 2), None),  # closing time itself is outside: [opens, closes)
        (DEFAULT, vn(2024, 5, 10, 13), None),
        # 18:30 UTC is 01:30 the next day in Vietnam
        (DEFAULT, utc(2024, 5, 9, 18, 30), (vn(2024, 5, 10, 1), vn(2024, 5, 10, 2))),
        (DEFAULT, utc(2024, 5, 10, 1, 30), None),  # 08:30 in Vietnam
        # a window that crosses midnight: opened yesterday, or opens today
        (OVERNIGHT, vn(2024, 5, 10, 22, 59, 59), None),
        (OVERNIGHT, vn(2024, 5, 10, 23), (vn(2024, 5, 10, 23), vn(2024, 5, 11, 1))),
        (OVERNIGHT, vn(2024, 5, 10, 23, 59), (vn(2024, 5, 10, 23), vn(2024, 5, 11, 1))),
        (OVERNIGHT, vn(2024, 5, 11, 0, 0), (vn(2024, 5, 10, 23), vn(2024, 5, 11, 1))),
        (OVERNIGHT, vn(2024, 5, 11, 0, 59, 59), (vn(2024, 5, 10, 23), vn(2024, 5, 11, 1))),
        (OVERNIGHT, vn(2024, 5, 11, 1), None),
        (OVERNIGHT, vn(2024, 5, 11, 12), None),
        (OVERNIGHT, vn(2024, 12, 31, 23, 30), (vn(2024, 12, 31, 23), vn(2025, 1, 1, 1))),
    ],
)
def test_bounds_at_gives_the_open_window_or_none(window, at, expected):
    # given a moment; when asked for the window around it
    bounds = window.bounds_at(at)
    # expect the [opened, closes) of the window open then, or None when closed
    assert bounds == expected
    assert window.is_open(at) is (expected is not None)


@pytest.mark.parametrize(
    ("at", "is_open"),
    [
        (vn(2024, 5, 10, 1, 0, 29), False),
        (vn(2024, 5, 10, 1, 0, 30), True),
        (vn(2024, 5, 10, 1, 0, 44, 999999), True),
        (vn(2024, 5, 10, 1, 0, 45), False),
    ],
)
def test_seconds_in_the_spec_count(at, is_open):
    window = Window.parse("01:00:30-01:00:45")
    assert window.is_open(at) is is_open


@pytest.mark.parametrize(
    "at",
    [utc(2024, 5, 10, 12), vn(2024, 5, 10, 1, 30), vn(2024, 5, 10, 3), utc(1970, 1, 1)],
)
def test_always_is_open_at_every_moment(at):
    window = Window.parse("always")
    bounds = window.bounds_at(at)
    assert bounds is not None
    assert bounds[0] <= at < bounds[1]
    assert window.is_open(at)
    assert window.next_open(at) == at


# --- next_open -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "at", "expected"),
    [
        (DEFAULT, vn(2024, 5, 10, 0, 0), vn(2024, 5, 10, 1)),
        (DEFAULT, vn(2024, 5, 10, 0, 59, 59), vn(2024, 5, 10, 1)),
        (DEFAULT, vn(2024, 5, 10, 1, 30), vn(2024, 5, 10, 1, 30)),  # open: now
        (DEFAULT, vn(2024, 5, 10, 2), vn(2024, 5, 11, 1)),
        (DEFAULT, vn(2024, 5, 10, 23, 59), vn(2024, 5, 11, 1)),
        (DEFAULT, vn(2024, 12, 31, 3), vn(2025, 1, 1, 1)),
        (DEFAULT, vn(2024, 2, 28, 3), vn(2024, 2, 29, 1)),
        (DEFAULT, utc(2024, 5, 9, 17, 0), vn(2024, 5, 10, 1)),  # 00:00 in Vietnam
        (DEFAULT, utc(2024, 5, 10, 12, 0), vn(2024, 5, 11, 1)),  # 19:00 in Vietnam
        (OVERNIGHT, vn(2024, 5, 10, 3), vn(2024, 5, 10, 23)),
        (OVERNIGHT, vn(2024, 5, 10, 22, 59), vn(2024, 5, 10, 23)),
        (OVERNIGHT, vn(2024, 5, 11, 0, 30), vn(2024, 5, 11, 0, 30)),  # opened yesterday
    ],
)
def test_next_open_in_vietnam(window, at, expected):
    # given a moment; when asked for the next opening
    opens = window.next_open(at)
    # expect that instant, with the window open then and (if it had to wait) closed just before
    assert opens == expected
    assert window.is_open(opens)
    if opens != at:
        assert not window.is_open(opens - timedelta(seconds=1))


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2024, 1, 15, 12), utc(2024, 1, 16, 0)),  # winter: 01:00 CET is 00:00 UTC
        (utc(2024, 7, 1, 12), utc(2024, 7, 1, 23)),  # summer: 01:00 CEST is 23:00 UTC
        (utc(2024, 3, 30, 12), utc(2024, 3, 31, 0)),  # clocks spring forward at 02:00, later
        (utc(2024, 3, 31, 12), utc(2024, 3, 31, 23)),  # first night of summer time
        (utc(2024, 10, 26, 12), utc(2024, 10, 26, 23)),  # clocks fall back at 03:00, later
        (utc(2024, 10, 27, 12), utc(2024, 10, 28, 0)),  # first night of winter time
    ],
)
def test_next_open_in_a_zone_with_daylight_saving(at, expected):
    # given 01:00-02:00 in Berlin, asked from noon UTC
    window = Window.parse("01:00-02:00", "Europe/Berlin")
    # when asked for the next opening
    opens = window.next_open(at)
    # expect 01:00 Berlin wall-clock time of the right night, whatever offset applies then
    assert opens.astimezone(UTC) == expected
    assert opens.astimezone(BERLIN).time() == time(1, 0)
    assert window.is_open(opens.astimezone(UTC))
    assert not window.is_open(expected - timedelta(seconds=1))


def test_next_open_when_the_window_opens_in_the_spring_forward_gap():
    # given 02:30-03:30 in Berlin on 31 March 2024, when 02:00 jumps to 03:00: is_open says
    # it is open 03:00-03:30 CEST, i.e. 01:00-01:30 UTC
    window = Window.parse("02:30-03:30", "Europe/Berlin")
    assert window.is_open(utc(2024, 3, 31, 1, 0))
    # when asked from midnight Berlin time
    opens = window.next_open(utc(2024, 3, 30, 23, 0))
    # expect an instant at which it is open, no later than 01:00 UTC
    assert window.is_open(opens.astimezone(UTC))
    assert opens <= utc(2024, 3, 31, 1, 0)


# --- seconds_open_between ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "start", "end", "expected_s"),
    [
        (DEFAULT, vn(2024, 5, 10), vn(2024, 5, 11), 3600),
        (DEFAULT, vn(2024, 5, 10), vn(2024, 5, 13), 3 * 3600),
        (DEFAULT, vn(2024, 5, 10, 1, 30), vn(2024, 5, 10, 3), 1800),  # starts inside
        (DEFAULT, vn(2024, 5, 10, 0), vn(2024, 5, 10, 1, 15), 900),  # ends inside
        (DEFAULT, vn(2024, 5, 10, 2), vn(2024, 5, 11, 1), 0),  # touches, never inside
        (DEFAULT, utc(2024, 5, 9, 18, 15), utc(2024, 5, 9, 18, 45), 1800),  # UTC inputs
        (DEFAULT, vn(2024, 5, 10, 5), vn(2024, 5, 10, 5), 0),  # empty
        (DEFAULT, vn(2024, 5, 11), vn(2024, 5, 10), 0),  # reversed
        (OVERNIGHT, vn(2024, 5, 10, 12), vn(2024, 5, 11, 12), 7200),
        (OVERNIGHT, vn(2024, 5, 10, 0, 30), vn(2024, 5, 10, 23, 30), 3600),  # two halves
        (Window.parse("01:00:30-01:00:45"), vn(2024, 5, 10), vn(2024, 5, 12), 30),
        (Window.parse("01:00-04:00", BERLIN), utc(2024, 5, 10, 12), utc(2024, 5, 11, 12), 10800),
        (Window.parse("always"), vn(2024, 5, 10), vn(2024, 5, 10, 0, 1, 30), 90),
        (Window.parse("always"), vn(2024, 5, 10), vn(2024, 5, 9), 0),
    ],
)
def test_seconds_open_between(window, start, end, expected_s):
    assert window.seconds_open_between(start, end) == expected_s


@pytest.mark.parametrize(
    ("window", "start"),
    [
        (DEFAULT, vn(2024, 5, 10, 12)),
        (OVERNIGHT, vn(2024, 5, 10, 12)),
        (Window.parse("01:00-04:00", BERLIN), utc(2024, 1, 15, 12)),
        (Window.parse("01:00-04:00", BERLIN), utc(2024, 7, 1, 12)),
        pytest.param(
            Window.parse("01:00-04:00", BERLIN),
            utc(2024, 3, 30, 12),
            id="berlin-spring-forward",
        ),
        pytest.param(
            Window.parse("01:00-04:00", BERLIN),
            utc(2024, 10, 26, 12),
            id="berlin-fall-back",
        ),
    ],
)
def test_seconds_open_between_agrees_with_is_open_over_a_day(window, start):
    # given one day; when the window's open seconds are computed
    end = start + timedelta(days=1)
    # expect the same total as asking is_open minute by minute on the UTC clock
    assert window.seconds_open_between(start, end) == open_seconds_sampled(window, start, end)
