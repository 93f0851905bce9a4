"""The push receiver over real HTTP, real Redis and the real status queue.

Given eSMS's GET on /esms/push/<token>, expect the answer the contract names and, for a
recorded push, the same status event a poll would give, with `source: push`.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis.asyncio as aioredis

from esms_callbacks.cli.receive import build_app
from esms_callbacks.errors import ConfigError
from esms_callbacks.events.publish import event_id
from esms_callbacks.push.inbox import PushInbox
from esms_callbacks.push.receiver import STATE, make_app
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings
from esms_callbacks.variables import networks as _networks
from tests.helpers import drain_events, runtime_of, wait_until, whereabouts
from tests.procs import PrivateRedis
from tests.receiving import (
    TOKEN,
    get,
    push_params,
    receiving,
    serve_app,
    stats,
)

OA = "1397492183140006179"


def applied(runtime: Runtime, count: int) -> None:
    """Wait until `count` pushes were accepted and the inbox is empty again."""
    inbox = PushInbox(runtime.redis, runtime.keys)
    wait_until(
        lambda: stats(runtime).get("pushes:accepted", 0) >= count and inbox.waiting() == 0,
        10,
        f"{count} pushes applied",
    )


def test_a_pushed_final_status_is_the_event_a_poll_would_give_and_settles_the_refid(
    push_settings,
):
    settings = push_settings()
    with receiving(settings) as (served, runtime):
        runtime.backlog.park(OA, ["r1"], time.time())
        answer = get(served.push_url(), push_params("r1", OA, send_status=5))
        assert (answer.status, answer.text) == (200, "OK\n")
        [event] = drain_events(settings.broker_url, settings.status_queue, 1)
        assert event["source"] == "push"
        assert (event["ref_id"], event["oa_id"], event["status"]) == ("r1", OA, "sent")
        assert event["terminal"] is True
        assert event["event_id"] == event_id("r1", OA, "sent:5")  # as the poll's sent event
        assert event["submitted_at"] is not None
        assert event["record"]["PhoneNumber"] == "0901888484"
        assert event["record"]["Telcoid"] == 2
        # nothing left to ask eSMS, once settled (the event goes out first, by design)
        wait_until(lambda: runtime.backlog.per_oa(time.time()) == [], 5, "r1 settled")
        assert runtime.backlog.park(OA, ["r1"], time.time()).already_finished == 1


def test_a_failed_push_carries_its_unquoted_error(push_settings):
    settings = push_settings()
    error = '{"error":-114,"message":"User is inactive, or reject the message"}'
    with receiving(settings) as (served, _):
        params = push_params("r2", OA, send_status=5, failed=1, error=error)
        assert get(served.push_url(), params).status == 200
        [event] = drain_events(settings.broker_url, settings.status_queue, 1)
    assert event["status"] == "failed"
    assert event["error"] == {"code": -114, "message": "User is inactive, or reject the message"}
    assert event["record"]["ErrorInfo"] == error


def test_a_pending_push_updates_the_state_once_and_the_refid_keeps_waiting(push_settings):
    settings = push_settings()
    with receiving(settings) as (served, runtime):
        runtime.backlog.park(OA, ["r3"], 1_000.0)  # due long ago
        due_before = whereabouts(runtime.backlog, OA, "r3").due_s
        for _ in range(2):
            assert get(served.push_url(), push_params("r3", OA, send_status=1)).status == 200
        applied(runtime, 2)
        events = drain_events(settings.broker_url, settings.status_queue, 2, timeout_s=1.5)
        assert [(e["status"], e["send_status"]) for e in events] == [("pending", 1)]
        assert whereabouts(runtime.backlog, OA, "r3").due_s == due_before
        assert stats(runtime)["pushes_applied:published"] == 1


def test_a_push_for_a_refid_never_submitted_is_published_and_a_later_submit_is_a_no_op(
    push_settings,
):
    settings = push_settings()
    with receiving(settings) as (served, runtime):
        assert get(served.push_url(), push_params("never", OA)).status == 200
        [event] = drain_events(settings.broker_url, settings.status_queue, 1)
        assert (event["status"], event["submitted_at"], event["source"]) == ("sent", None, "push")
        assert runtime.backlog.park(OA, ["never"], time.time()).already_finished == 1


def test_pushes_for_refids_never_submitted_can_be_ignored(push_settings):
    settings = push_settings(push_unsubmitted="ignore")
    with receiving(settings) as (served, runtime):
        assert get(served.push_url(), push_params("stranger", OA)).status == 200
        applied(runtime, 1)
        assert stats(runtime)["pushes_applied:ignored"] == 1
        assert drain_events(settings.broker_url, settings.status_queue, 1, timeout_s=1) == []
        assert runtime.backlog.park(OA, ["stranger"], time.time()).added == 1


def test_a_wrong_token_looks_like_any_unknown_path(push_settings):
    settings = push_settings()
    with receiving(settings) as (served, runtime):
        unknown = get(served.base_url + "/nothing-here")
        for method in ("GET", "POST"):
            wrong = get(served.push_url("x" * len(TOKEN)), push_params("r", OA), method=method)
            assert (
                (wrong.status, wrong.text) == (unknown.status, unknown.text) == (404, unknown.text)
            )
        assert get(served.push_url(), push_params("r", OA), method="POST").status == 405
        wait_until(lambda: stats(runtime).get("pushes:wrong_token") == 2, 5, "counted")


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ([("SendStatus", "5"), ("oaid", OA)], "SMSID is missing"),
        ([("SMSID", "r"), ("SendStatus", "5")], "oaid is missing"),
        ([("SMSID", "r"), ("SendStatus", "done"), ("oaid", OA)], "SendStatus must be a whole"),
        ([("SMSID", "r"), ("SendStatus", "5"), ("oaid", OA), ("oaid", "2")], "given twice"),
        ([("SMSID", "r r"), ("SendStatus", "5"), ("oaid", OA)], "is not an eSMS id"),
        ([("SMSID", "r"), ("SendStatus", "5"), ("oaid", OA), ("x", "y" * 4001)], "at most 4000"),
        (
            [("SMSID", "r"), ("SendStatus", "5"), ("oaid", OA)]
            + [(f"p{i}", "") for i in range(40)],
            "more than 40 parameters",
        ),
    ],
)
def test_a_malformed_push_gets_400_with_the_reason_and_is_counted(push_settings, params, reason):
    settings = push_settings()
    with receiving(settings) as (served, runtime):
        answer = get(served.push_url(), params)
        assert answer.status == 400
        assert reason in answer.text
        wait_until(lambda: stats(runtime).get("pushes:malformed") == 1, 5, "counted")
        assert "pushes:accepted" not in stats(runtime)


def test_only_allowed_sources_may_push_and_a_trusted_proxy_names_the_source(push_settings):
    settings = push_settings(
        push_allow_from=_networks("203.0.113.0/24"),
        push_trusted_proxies=_networks("127.0.0.1"),
    )
    with receiving(settings) as (served, runtime):
        params = push_params("r4", OA)
        assert get(served.push_url(), params).status == 403  # the proxy itself is not allowed
        spoofed = {"X-Forwarded-For": "203.0.113.9, 198.51.100.1"}  # last hop is the client
        assert get(served.push_url(), params, headers=spoofed).status == 403
        forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
        assert get(served.push_url(), params, headers=forwarded).status == 200
        wait_until(lambda: stats(runtime).get("pushes:forbidden") == 2, 5, "counted")


def test_a_flood_beyond_the_allowed_wait_is_refused_with_429_and_other_sources_get_in(
    push_settings,
):
    # given one push every 30 s per source, and no waiting for a turn
    settings = push_settings(
        push_rate_per_source=1 / 30,
        push_rate_wait_s=0.0,
        push_trusted_proxies=_networks("127.0.0.1"),
    )
    with receiving(settings) as (served, runtime):
        flood = [get(served.push_url(), push_params(f"f{i}", OA)) for i in range(12)]
        assert [a.status for a in flood] == [200] + [429] * 11
        assert all(int(a.headers["Retry-After"]) >= 1 for a in flood[1:])
        other = {"X-Forwarded-For": "198.51.100.7"}
        assert get(served.push_url(), push_params("other", OA), headers=other).status == 200
        counted = stats(runtime)
        assert (counted["pushes:rate_limited"], counted["pushes:accepted"]) == (11, 2)


def test_a_source_over_its_rate_is_slowed_down_not_refused(push_settings):
    # given 10 pushes a second per source (a second's burst), waiting up to 5 s for a turn
    settings = push_settings(push_rate_per_source=10.0, push_rate_wait_s=5.0)
    with receiving(settings) as (served, runtime):
        started = time.monotonic()
        with ThreadPoolExecutor(25) as pool:
            answers = list(
                pool.map(lambda i: get(served.push_url(), push_params(f"s{i}", OA)), range(25))
            )
        elapsed_s = time.monotonic() - started
        # expect every push taken, the ones past the burst after waiting their turn
        assert [a.status for a in answers] == [200] * 25
        assert elapsed_s >= 1.0  # 25 pushes, 11 at once, then 10 a second
        applied(runtime, 25)


def own_account(settings: Settings) -> dict[str, Any]:
    """The test's account (conftest's make_settings), as the receiver takes it."""
    account = runtime_of(settings).account
    return {account.name: account}


def test_no_redis_means_503_so_esms_tries_again(push_settings):
    settings = push_settings()
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    with serve_app(lambda: make_app(settings, dead, own_account(settings))) as served:
        answer = get(served.push_url(), push_params("r5", OA))
        assert answer.status == 503
        assert answer.headers["Retry-After"] == "5"
        assert get(served.base_url + "/esms/health").status == 503


def test_a_full_inbox_means_503(push_settings):
    settings = push_settings(push_inbox_max=2)
    client = aioredis.Redis.from_url(settings.redis_url)
    with serve_app(
        lambda: make_app(settings, client, own_account(settings))
    ) as served:  # no applier: it fills up
        answers = [get(served.push_url(), push_params(f"r{i}", OA)).status for i in range(3)]
        assert answers == [200, 200, 503]
        assert get(served.base_url + "/esms/health").status == 200


@pytest.mark.parametrize(
    ("token", "problem"),
    [("", "ESMS_PUSH_TOKEN is not set"), ("short", "at least 16"), ("a" * 15 + "/", "only")],
)
def test_the_receiver_refuses_to_start_without_a_good_token(push_settings, token, problem):
    with pytest.raises(ConfigError, match=problem):
        build_app(push_settings(push_token=token))


def test_settings_for_the_receiver_are_read_and_checked():
    env = {
        "ESMS_ACCOUNT": "a",
        "ESMS_PUSH_TOKEN": TOKEN,
        "ESMS_PUSH_ALLOW_FROM": "203.0.113.0/24, 2001:db8::1",
        "ESMS_PUSH_UNSUBMITTED": "ignore",
        "ESMS_RECEIVER_PORT": "9000",
    }
    settings = Settings.from_env(env)
    assert [str(n) for n in settings.push_allow_from] == ["203.0.113.0/24", "2001:db8::1/128"]
    assert (settings.push_unsubmitted, settings.receiver_port) == ("ignore", 9000)
    assert TOKEN not in repr(settings) and TOKEN not in json.dumps(settings.describe())
    with pytest.raises(ConfigError, match=r"ESMS_PUSH_ALLOW_FROM.*'nowhere' is not an IP"):
        Settings.from_env({**env, "ESMS_PUSH_ALLOW_FROM": "nowhere"})
    with pytest.raises(ConfigError, match=r"ESMS_PUSH_UNSUBMITTED.*'publish' or 'ignore'"):
        Settings.from_env({**env, "ESMS_PUSH_UNSUBMITTED": "drop"})


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_a_redis_outage_is_503_meanwhile_and_every_push_answered_200_is_published(
    push_settings, tmp_path
):
    # given a receiver whose Redis (limiter, RefIds, inbox) is a server of the test's own
    private = PrivateRedis(tmp_path).start()
    settings = push_settings(redis_url=private.url)
    try:
        with receiving(settings) as (served, _):
            before = get(served.push_url(), push_params("before", OA))
            # when that Redis stops, and comes back with its data
            private.stop()
            during = get(served.push_url(), push_params("during", OA))
            private.start()
            wait_until(
                lambda: get(served.base_url + "/esms/health").status == 200, 10, "Redis back"
            )
            after = get(served.push_url(), push_params("after", OA))
            retried = get(served.push_url(), push_params("during", OA))  # eSMS retries
            # expect 503 while it was away, and an event for every push answered 200
            assert [a.status for a in (before, during, after, retried)] == [200, 503, 200, 200]
            events = drain_events(settings.broker_url, settings.status_queue, 3, timeout_s=30)
    finally:
        private.stop()
    assert sorted(e["ref_id"] for e in events) == ["after", "before", "during"]


@pytest.mark.parametrize(
    "query",
    [
        "SMSID=%FF%FE&SendStatus=5&oaid=1",  # not UTF-8
        "SMSID=r&SendStatus=5&oaid=%",  # a broken escape
        "SMSID=r&SendStatus=%EF%BC%95&oaid=1",  # a full-width digit
        "SMSID=r&SendStatus=99999999999999999999&oaid=1",
        "SMSID=r&SendStatus=5&oaid=1&error_info=%22%7B%22",  # a quoted half object
        "&&&=&==&SMSID",
        "SMSID=" + "r" * 200 + "&SendStatus=5&oaid=1",
        "a=" + "%00" * 100,
    ],
)
def test_odd_pushes_get_an_answer_never_a_crash(push_settings, query):
    settings = push_settings()
    with receiving(settings) as (served, _):
        answer = get(served.push_url() + "?" + query)
        assert answer.status in (200, 400)
        assert get(served.push_url(), push_params("fine", OA)).status == 200


def test_a_request_line_past_aiohttp_s_limit_is_refused_and_the_receiver_goes_on(push_settings):
    settings = push_settings()
    with receiving(settings) as (served, _):
        huge = get(served.push_url() + "?SMSID=" + "r" * 20_000)
        assert huge.status in (400, 414)
        assert get(served.push_url(), push_params("fine", OA)).status == 200


def test_health_says_so_when_the_applier_is_not_running(push_settings):
    settings = push_settings()
    client = aioredis.Redis.from_url(settings.redis_url)

    def make() -> Any:
        app = make_app(settings, client, own_account(settings))
        app[STATE].applier_healthy = lambda: False
        return app

    with serve_app(make) as served:
        answer = get(served.base_url + "/esms/health")
        assert (answer.status, answer.text) == (503, "push applier not running\n")


def test_a_long_vietnamese_error_is_taken_whole(push_settings):
    settings = push_settings()
    message = "Người dùng không hoạt động hoặc từ chối tin nhắn. " * 25  # ~1,250 characters
    error = json.dumps({"error": -114, "message": message}, ensure_ascii=False)
    with receiving(settings) as (served, _):
        params = push_params("long", OA, failed=1, error=error)
        assert get(served.push_url(), params).status == 200
        [event] = drain_events(settings.broker_url, settings.status_queue, 1)
    assert event["error"] == {"code": -114, "message": message}


def test_trusting_every_address_as_a_proxy_is_refused():
    env = {"ESMS_ACCOUNT": "a", "ESMS_PUSH_TRUSTED_PROXIES": "10.0.0.1, 0.0.0.0/0"}
    with pytest.raises(ConfigError, match="trusts every address"):
        Settings.from_env(env)
