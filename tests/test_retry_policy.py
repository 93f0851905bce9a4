"""The retry policy (retry_policy.py): what each failure leads to, decided in one place."""

from __future__ import annotations

import pytest

from esms_callbacks.errors import (
    AuthError,
    BalanceError,
    EsmsError,
    MalformedResponse,
    RateLimited,
    RequestRejected,
    ServerError,
    TransportError,
    UnexpectedCode,
)
from esms_callbacks.retry_policy import (
    DRAIN_TASK_RETRY,
    FETCH_TASK_RETRY,
    PAUSE,
    REPOLL,
    RETRY,
    WAIT_FOR_WINDOW,
    after_publish_failure_s,
    decide,
    drain_gives_up,
    retry_after_s,
)
from esms_callbacks.settings import Settings
from esms_callbacks.tasks import drain, fetch_callbacks

SETTINGS = Settings(
    retry_base_s=2.0,
    account_pause_s=300.0,
    window_guard_s=1.0,
    repoll_after_s=900.0,
    max_retries=3,
).with_terms(rate_interval_s=0.5, rate_margin_s=0.0)
TERMS = SETTINGS.terms


@pytest.mark.parametrize("kind", [TransportError, ServerError, MalformedResponse, UnexpectedCode])
def test_a_transient_failure_is_retried_and_its_refids_wait_the_retry_base(kind):
    decision = decide(kind("boom"), SETTINGS, TERMS, near_window_edge=False)
    assert (decision.kind, decision.requeue_after_s, decision.stop) == (RETRY, 2.0, "")
    assert (decision.widen_margin, decision.hold_s) == (False, 0.0)


def test_a_160_is_retried_widening_the_margin_and_holding_the_account_one_interval():
    decision = decide(RateLimited("160", code=160), SETTINGS, TERMS, near_window_edge=True)
    assert (decision.kind, decision.widen_margin, decision.hold_s) == (RETRY, True, 0.5)


@pytest.mark.parametrize("kind", [AuthError, BalanceError])
def test_an_account_error_pauses_the_account_and_its_refids_keep_their_turn(kind):
    decision = decide(kind("refused"), SETTINGS, TERMS, near_window_edge=False)
    assert (decision.kind, decision.pause_s, decision.requeue_after_s) == (PAUSE, 300.0, 0.0)
    assert decision.stop == "account paused"


def test_a_rejection_waits_for_the_window_at_its_edge_and_the_repoll_delay_elsewhere():
    rejected = RequestRejected("Code 99", code=99)
    at_edge = decide(rejected, SETTINGS, TERMS, near_window_edge=True)
    inside = decide(rejected, SETTINGS, TERMS, near_window_edge=False)
    assert (at_edge.kind, at_edge.requeue_after_s, at_edge.stop) == (
        WAIT_FOR_WINDOW,
        1.0,
        "window closed",
    )
    assert (inside.kind, inside.requeue_after_s, inside.stop) == (REPOLL, 900.0, "")
    assert decide(EsmsError("other"), SETTINGS, TERMS, False).kind == REPOLL


def test_the_drain_retries_after_the_breaker_s_wait_but_never_before_the_next_slot():
    assert retry_after_s(TERMS, breaker_wait_s=0.0) == TERMS.spacing_s
    assert retry_after_s(TERMS, breaker_wait_s=8.0) == 8.0
    assert after_publish_failure_s(SETTINGS) == 2.0


def test_a_drain_gives_up_after_the_configured_retries():
    assert [drain_gives_up(n, SETTINGS) for n in range(5)] == [False, False, False, True, True]


def test_the_tasks_carry_the_policy_s_own_retry_options():
    for task, options in [(drain, DRAIN_TASK_RETRY), (fetch_callbacks, FETCH_TASK_RETRY)]:
        for name, value in options.items():
            assert getattr(task, name) == value, (task.name, name)
