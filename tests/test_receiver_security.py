"""The receiver against pushes that are not eSMS's: forged ones, a start without an allow-list,
and a token being rotated. Real HTTP, real Redis, the real status queue.
"""

from __future__ import annotations

import json
import logging
import time

import pytest

from esms_callbacks.accounts import RECEIVER_SECRETS, default_account
from esms_callbacks.cli.receive import build_app
from esms_callbacks.errors import ConfigError
from esms_callbacks.settings import Settings
from esms_callbacks.variables import networks as _networks
from tests.helpers import drain_events, wait_until, whereabouts
from tests.receiving import (
    TOKEN,
    get,
    push_params,
    receiving,
    stats,
)

OA = "1397492183140006179"
PREVIOUS = "previous-token-9876543210zyxw"
THIRD = "another-token-0000000000aaaa"


# A. A forged push settles nothing.


@pytest.mark.parametrize(
    ("forged", "named"),
    [
        # the URL and a RefId are all a forger needs to know for this one
        ([("SMSID", "X"), ("oaid", OA), ("SendStatus", "5")], "SendFailed, SendSuccess"),
        # a forger who knows the names but not how eSMS counts a done message
        (
            {**push_params("X", OA), "SendSuccess": "0", "SendFailed": "0"},
            "SendSuccess (0) + SendFailed (0) is not TotalReceiver (1)",
        ),
    ],
)
def test_a_forged_push_is_refused_with_the_reason_and_changes_nothing(push_settings, forged, named):
    # given a RefId waiting for its status
    settings = push_settings()
    with receiving(settings) as (served, runtime):
        runtime.backlog.park(OA, ["X"], time.time())
        # when a push that lacks what eSMS always sends with a status comes for it
        answer = get(served.push_url(), forged)
        # expect 400 naming what is wrong, nothing in the inbox, no event, the RefId waiting
        assert answer.status == 400
        assert answer.text.startswith("malformed push: ") and named in answer.text
        wait_until(lambda: stats(runtime).get("pushes:malformed") == 1, 5, "counted")
        assert runtime.redis.xlen(runtime.keys.pushes) == 0
        assert "pushes:accepted" not in stats(runtime)
        assert drain_events(settings.broker_url, settings.status_queue, 1, timeout_s=1) == []
        assert whereabouts(runtime.backlog, OA, "X").where == "waiting"


# B. Anyone may push while no allow-list is set: say so at start.


def allow_from_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "ESMS_PUSH_ALLOW_FROM" in record.getMessage()
    ]


def test_the_receiver_warns_at_start_when_no_allow_list_is_set(push_settings, caplog):
    # given no ESMS_PUSH_ALLOW_FROM
    settings = push_settings()
    # when the receiver starts
    with caplog.at_level(logging.WARNING, logger="esms.receiver"), receiving(settings):
        pass
    # expect one warning: who can push, and how to set the allow-list
    [warning] = allow_from_warnings(caplog)
    assert "anyone who learns the push URL can push" in warning
    assert "ESMS_PUSH_ALLOW_FROM=<eSMS's addresses>" in warning


def test_the_receiver_does_not_warn_with_an_allow_list(push_settings, caplog):
    # given an allow-list
    settings = push_settings(push_allow_from=_networks("203.0.113.0/24"))
    # when the receiver starts
    with caplog.at_level(logging.WARNING, logger="esms.receiver"), receiving(settings):
        pass
    # expect no warning about it
    assert allow_from_warnings(caplog) == []


# C. Rotating the token: the previous one is taken too, and counted, until eSMS has switched.


def test_the_previous_token_is_taken_beside_the_current_one_and_counted(push_settings):
    # given a receiver with a current and a previous token
    settings = push_settings(push_token_previous=PREVIOUS)
    with receiving(settings) as (served, runtime):
        # when pushes come with each, and with a third token
        current = get(served.push_url(TOKEN), push_params("c1", OA))
        previous = get(served.push_url(PREVIOUS), push_params("p1", OA))
        third = get(served.push_url(THIRD), push_params("t1", OA))
        # expect both tokens answered 200 and recorded, the third 404; the previous one counted
        assert [a.status for a in (current, previous, third)] == [200, 200, 404]
        events = drain_events(settings.broker_url, settings.status_queue, 2)
        assert sorted(e["ref_id"] for e in events) == ["c1", "p1"]
        wait_until(
            lambda: (
                stats(runtime).get("pushes:previous_token") == 1
                and stats(runtime).get("pushes:wrong_token") == 1
            ),
            5,
            "counted",
        )
        assert stats(runtime)["pushes:accepted"] == 2


def test_the_previous_token_is_read_as_a_secret():
    # given both tokens in the environment
    env = {"ESMS_ACCOUNT": "a", "ESMS_PUSH_TOKEN": TOKEN, "ESMS_PUSH_TOKEN_PREVIOUS": PREVIOUS}
    # when read
    settings = Settings.from_env(env)
    account = default_account(settings, RECEIVER_SECRETS, env)
    # expect it read, never shown
    assert account.secrets.push_token_previous == PREVIOUS
    assert account.secrets.push_token_problem() == ""
    assert PREVIOUS not in repr(account) and PREVIOUS not in repr(settings)
    assert "push_token_previous=<set>" in repr(account.secrets)
    assert PREVIOUS not in json.dumps(settings.describe())


@pytest.mark.parametrize(
    ("previous", "problem"),
    [
        ("short", "ESMS_PUSH_TOKEN_PREVIOUS is 5 characters; use at least 16"),
        ("a" * 15 + "/", "ESMS_PUSH_TOKEN_PREVIOUS may hold only letters"),
        (TOKEN, "ESMS_PUSH_TOKEN_PREVIOUS is ESMS_PUSH_TOKEN"),
    ],
)
def test_the_receiver_refuses_a_previous_token_it_would_refuse_as_the_token(
    push_settings, previous, problem
):
    # given a previous token that breaks the token's rules
    settings = push_settings(push_token_previous=previous)
    # when the receiver starts / expect it refuses, saying why without the token
    with pytest.raises(ConfigError, match=problem) as refused:
        build_app(settings)
    assert previous not in str(refused.value) and TOKEN not in str(refused.value)
