"""What the coming window can carry, and the warning when the backlog exceeds it."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from esms_callbacks.engine.capacity import coming_window
from esms_callbacks.esms.window import Window
from esms_callbacks.settings import Settings
from esms_callbacks.terms import Terms
from tests.helpers import runtime_of

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def at_vn(hour: int, minute: int = 0) -> float:
    return datetime(2026, 11, 28, hour, minute, tzinfo=VN).timestamp()


def test_a_closed_window_carries_a_full_night_at_the_defaults():
    # (3600 s - 2 x 1 s guard) / (1.0 s + 0.002 s margin) = 3590 requests of 100
    capacity = coming_window(Settings(), Terms(), at_vn(0, 0))
    assert capacity.open_s == 3600
    assert capacity.refs == 359_000
    assert capacity.window_opens_at == datetime(2026, 11, 28, 1, 0, tzinfo=VN)


def test_an_open_window_carries_only_what_is_left_of_it():
    capacity = coming_window(Settings(), Terms(), at_vn(1, 30))
    assert capacity.open_s == 1800
    assert capacity.refs == 1795 * 100  # (1800 s - the closing guard) / 1.002 s


def test_without_margin_the_design_figure_holds():
    assert coming_window(Settings(), Terms(rate_margin_s=0.0), at_vn(0)).refs == 359_800


def test_newer_terms_carry_a_day_at_20_per_second():
    terms = Terms(
        rate_interval_s=0.05,
        rate_margin_s=0.0,
        max_refs_per_request=200,
        window=Window.parse("always"),
    )
    assert coming_window(Settings(), terms, at_vn(12)).refs == 86400 * 20 * 200


def test_backlog_over_capacity_is_logged_once_per_ten_minutes(make_settings, caplog):
    # given a window of one minute at 1 request/s of 100: 5,600 RefIds a night (guards, margin)
    settings = make_settings(
        rate_interval_s=1.0,
        rate_margin_s=0.02,
        window=Window.parse("01:00-01:01", "Asia/Ho_Chi_Minh"),
    )
    runtime = runtime_of(settings)
    now_s = at_vn(0)
    runtime.backlog.park("oa1", [f"c{i}" for i in range(5600)], now_s)
    with caplog.at_level(logging.WARNING):
        runtime.dispatch.check_capacity(now_s)
    assert caplog.records == []  # 5,600 fit exactly

    # when one more RefId waits
    runtime.backlog.park("oa1", ["one-more"], now_s)
    with caplog.at_level(logging.WARNING):
        runtime.dispatch.check_capacity(now_s)
        runtime.dispatch.check_capacity(now_s)

    # expect one warning naming the numbers
    assert [r.getMessage() for r in caplog.records] == [
        "backlog of 5601 RefIds exceeds the 5600 the coming window "
        "(2026-11-28T01:00:00+07:00, 0:01:00 open) can carry at the current limits; "
        "about 2 windows to clear it"
    ]
