"""Metrics and the status snapshot: what an operator watches at 01:00."""

from __future__ import annotations

import asyncio
import re

import aiohttp
from aiohttp.test_utils import TestServer

from esms_callbacks.cli.metrics_server import make_app
from esms_callbacks.esms.window import Window
from esms_callbacks.ops.status import account_state
from esms_callbacks.settings import Settings
from tests.helpers import account_for, runtime_of


def series(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_endpoint_reports_backlog_requests_events_and_errors(make_settings, sim):
    # given an account with two requests behind it (one failed with 160) and RefIds waiting
    settings = make_settings(window=Window.parse("01:00-02:00"))
    runtime = runtime_of(settings)
    now_s = runtime.clock.now_s()
    runtime.backlog.park("oa-1", ["m1", "m2", "m3"], now_s)
    runtime.redis.hset(
        runtime.keys.stats,
        mapping={
            "requests": 2,
            "refs_asked": 150,
            "events:sent": 140,
            "errors:160": 1,
            "request_time_s": "0.120000",
            "pushes:accepted": 7,
            "pushes:wrong_token": 2,
            "pushes_applied:duplicate": 3,
        },
    )
    for _ in range(settings.breaker_after):  # eSMS failing: the breaker opens for ESMS_RETRY_BASE
        runtime.breaker.record_failure()
    runtime.redis.zadd(
        runtime.keys.recent, {f"{now_s - 5}:100": now_s - 5, f"{now_s - 1}:50": now_s - 1}
    )

    # when Prometheus scrapes the endpoint over HTTP
    async def scrape() -> tuple[int, str, str]:
        async with (
            TestServer(make_app(runtime)) as server,
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/metrics")) as response,
        ):
            return response.status, response.headers["Content-Type"], await response.text()

    status, content_type, text = asyncio.run(scrape())

    # expect the numbers, labelled by account (never a credential)
    assert status == 200 and content_type.startswith("text/plain")
    got = series(text)
    acct = f'account="{account_for(settings).key_id}"'
    assert got[f"esms_waiting_refs{{{acct}}}"] == 3
    assert got[f'esms_oa_due_now_refs{{{acct},oa_id="oa-1"}}'] == 3
    assert got[f"esms_requests_total{{{acct}}}"] == 2
    assert got[f'esms_events_total{{{acct},status="sent"}}'] == 140
    assert got[f'esms_errors_total{{{acct},code="160"}}'] == 1
    assert got[f'esms_pushes_total{{{acct},result="accepted"}}'] == 7
    assert got[f'esms_pushes_total{{{acct},result="wrong_token"}}'] == 2
    assert got[f'esms_pushes_applied_total{{{acct},outcome="duplicate"}}'] == 3
    assert got[f"esms_push_inbox_waiting{{{acct}}}"] == 0
    assert got[f"esms_requests_last_minute{{{acct}}}"] == 2
    assert got[f"esms_rate_used{{{acct}}}"] == round(2 / (60 / 0.05), 3)
    assert got[f"esms_request_seconds{{{acct}}}"] == 0.12
    assert got[f"esms_failures_in_a_row{{{acct}}}"] == settings.breaker_after
    assert 0 < got[f"esms_backing_off_seconds{{{acct}}}"] <= settings.retry_base_s
    assert got[f"esms_drainers_wanted{{{acct}}}"] == 5  # 2 + ceil(0.12 s / 0.055 s)
    assert (
        account_for(settings).secrets.api_key not in text
        and account_for(settings).secrets.secret_key not in text
    )
    assert re.search(r"^# TYPE esms_requests_total counter$", text, re.M)


def test_status_snapshot_shows_pause_and_mean_request_size(make_settings):
    settings = make_settings()
    runtime = runtime_of(settings)
    now_s = runtime.clock.now_s()
    runtime.redis.set(runtime.keys.paused, "eSMS answered Code 101", px=60_000)
    runtime.redis.zadd(
        runtime.keys.recent, {f"{now_s - 2}:100": now_s - 2, f"{now_s - 1}:60": now_s - 1}
    )
    state = account_state(runtime, now_s)
    assert state["paused"] == "eSMS answered Code 101"
    assert state["refs_per_request_last_minute"] == 80.0
    assert state["window_open"] is True


def test_healthz_answers_while_redis_does(make_settings):
    async def get(settings: Settings, path: str) -> tuple[int, str]:
        async with (
            TestServer(make_app(runtime_of(settings))) as server,
            aiohttp.ClientSession() as session,
            session.get(server.make_url(path)) as response,
        ):
            return response.status, await response.text()

    assert asyncio.run(get(make_settings(), "/healthz")) == (200, "ok\n")
    unreachable = make_settings(redis_url="redis://127.0.0.1:1/0")
    assert asyncio.run(get(unreachable, "/healthz")) == (503, "redis unavailable\n")
