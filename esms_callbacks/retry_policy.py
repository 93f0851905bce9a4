"""What each failure leads to: retried or not, how long to wait, when to give up. Decided here,
next to the error tree (errors); the drainer and the tasks only apply the decision.

    TransientError   RETRY: the RefIds wait ESMS_RETRY_BASE, behind what is already due;
                     the breaker counts the failure; the drain task retries once the breaker
                     lets requests go again, and no sooner than the next slot. A RateLimited
                     (Code 160) also widens the rate margin and holds the account one interval.
    NotReady         (Code 105) not a failure: the drainer takes it as an answer
    AccountError     PAUSE: no request for ESMS_ACCOUNT_PAUSE; the RefIds keep their turn
    RequestRejected  near a window edge, WAIT_FOR_WINDOW: eSMS's clock disagrees with ours,
                     the RefIds wait ESMS_WINDOW_GUARD; else REPOLL: the same input would be
                     refused again at once, the RefIds wait ESMS_REPOLL_AFTER
    one bad RefId    a transient failure (not 160) or a rejection strikes each RefId of the
                     request; struck twice, a RefId rides in half a batch, then a quarter...,
                     waiting ESMS_RETRY_BASE each time, until alone. Each failure alone
                     while the account's previous request was answered is evidence against
                     it: it then waits twice as long each time (lone_retry_after_s), and
                     with GIVE_UP_LONE_FAILURES of them over GIVE_UP_LONE_SPAN_S and no
                     answer for it between, it is given up with an `expired` event that
                     says why (gives_up). A failure eSMS gives other requests too is eSMS's
                     trouble, not the RefId's: it is no evidence. A failure of a batch that
                     is being split does not count for the breaker while the account's
                     previous request was answered: one RefId cannot back the account off
    PublishFailed    the broker, not eSMS, failed: the RefIds not published wait
                     ESMS_RETRY_BASE, and so does the drain task before it retries
    a drain task     gives up after ESMS_MAX_RETRIES retries; its RefIds wait for a later drain

The Celery tasks' own retries (Redis away, no account named), the broker retries of a
publish and the push applier's backoff are the options below, given to the task decorators,
to kombu and to push.applier.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.exceptions import RedisError

from esms_callbacks.errors import (
    AccountError,
    AccountUnavailable,
    EsmsError,
    NoAccountNamed,
    NotDurable,
    RateLimited,
    TransientError,
)
from esms_callbacks.settings import Settings
from esms_callbacks.terms import Terms
from esms_callbacks.tuning import GIVE_UP_LONE_FAILURES, GIVE_UP_LONE_SPAN_S, LONE_RETRY_MOST_S

# esms.drain: Redis unreachable mid-drain; a few quick retries (the RefIds are safe in Redis,
# their leases expire and a later drain asks them).
DRAIN_TASK_RETRY: dict[str, Any] = {
    "autoretry_for": (RedisError,),
    "retry_backoff": 1,
    "retry_backoff_max": 60,
    "max_retries": 5,
}
# esms.fetch_callbacks: Redis (the waiting set) unreachable, its replicas not confirming the
# RefIds parked, or this worker names no account to
# file RefIds under (no credentials): retry with backoff until that is fixed; the submission
# stays in the broker meanwhile, so it is never dropped nor filed where no drainer looks.
FETCH_TASK_RETRY: dict[str, Any] = {
    "autoretry_for": (RedisError, NoAccountNamed, AccountUnavailable, NotDurable),
    "retry_backoff": 1,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": None,
}

# Publishing status events (kombu's retry_policy): broker hiccups are retried for about 20 s
# (well inside a lease), then PublishFailed surfaces and the RefIds go back to wait: an event
# is never silently dropped.
PUBLISH_RETRY: Mapping[str, float] = {
    "max_retries": 6,
    "interval_start": 0.5,
    "interval_step": 1.0,
    "interval_max": 5.0,
}

# A producer's submission on a Sentinel broker (Celery's task_publish_retry_policy): a
# failover leaves no master for a few seconds (down-after-milliseconds and the election), and
# kombu spends Celery's default three retries cycling through the sentinels without a pause.
# Retried for about 25 s instead, then the producer gets the error.
SUBMIT_RETRY_SENTINEL: Mapping[str, float] = {
    "max_retries": 30,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}

# The receiver's applier thread after a failed round (Redis or the broker away): the entries stay
# pending in the inbox, and it tries again after this long, doubling up to the most.
APPLIER_RETRY_FIRST_S = 1.0
APPLIER_RETRY_MOST_S = 30.0


class Action(StrEnum):
    """What a failed request leads to (see the table above)."""

    RETRY = "retry"
    PAUSE = "pause"
    WAIT_FOR_WINDOW = "wait for the window"
    REPOLL = "repoll"


RETRY, PAUSE, WAIT_FOR_WINDOW, REPOLL = (
    Action.RETRY,
    Action.PAUSE,
    Action.WAIT_FOR_WINDOW,
    Action.REPOLL,
)


@dataclass(frozen=True)
class Decision:
    """What to do after eSMS failed a request."""

    kind: Action
    requeue_after_s: float  # the failed RefIds are due again this long from now
    stop: str = ""  # why the drain stops ('' to go on; RETRY raises Retry instead)
    widen_margin: bool = False  # RETRY: eSMS saw requests too close together
    hold_s: float = 0.0  # RETRY: the breaker holds the account at least this long
    pause_s: float = 0.0  # PAUSE: no request of the account for this long
    # The failure may come from one of the RefIds the request carried (eSMS choking on it):
    # each of them gets a strike, and a RefId struck twice rides in ever smaller batches
    # (engine.backlog's lease) until the one eSMS chokes on is alone (see gives_up).
    suspects_refs: bool = False


def decide(exc: EsmsError, settings: Settings, terms: Terms, near_window_edge: bool) -> Decision:
    """The decision for a failed request; `near_window_edge`: the failure came within a
    minute of the window's opening or closing (or outside it)."""
    if isinstance(exc, TransientError):
        # The failed batch goes behind what is already due, so one bad batch cannot hold the
        # account; a failing eSMS is the breaker's business.
        rate_limited = isinstance(exc, RateLimited)
        return Decision(
            RETRY,
            settings.retry_base_s,
            widen_margin=rate_limited,
            hold_s=terms.rate_interval_s if rate_limited else 0.0,
            suspects_refs=not rate_limited,
        )
    if isinstance(exc, AccountError):
        return Decision(PAUSE, 0.0, stop="account paused", pause_s=settings.account_pause_s)
    if near_window_edge:
        return Decision(WAIT_FOR_WINDOW, settings.window_guard_s, stop="window closed")
    return Decision(REPOLL, settings.repoll_after_s, suspects_refs=True)


def split_after_s(settings: Settings) -> float:
    """How long the RefIds of a failed request that is being split wait (Code 99 included):
    the halves without the culprit should not wait ESMS_REPOLL_AFTER for it."""
    return settings.retry_base_s


def gives_up(alone: int, alone_since_s: float | None, now_s: float) -> bool:
    """Whether a RefId that just failed alone while eSMS answered the account's others is
    given up (an `expired` event that says why): only on evidence that eSMS refuses it
    alone, not eSMS's own trouble: it failed alone so, with no answer for it in between, at
    least GIVE_UP_LONE_FAILURES times (`alone`) over at least GIVE_UP_LONE_SPAN_S (since
    `alone_since_s`, the first of them). See tuning.py for why these figures."""
    if alone_since_s is None:
        return False
    return alone >= GIVE_UP_LONE_FAILURES and now_s - alone_since_s >= GIVE_UP_LONE_SPAN_S


def lone_retry_after_s(settings: Settings, alone: int) -> float:
    """How long a RefId that failed alone, `alone` times while eSMS answered others, waits:
    ESMS_RETRY_BASE doubling each time up to LONE_RETRY_MOST_S, so that one RefId eSMS
    chokes on costs the account a request a minute at most while the evidence builds."""
    return min(settings.retry_base_s * 2.0 ** max(0, alone - 1), LONE_RETRY_MOST_S)


def retry_after_s(terms: Terms, breaker_wait_s: float) -> float:
    """When the drain task retries after a transient eSMS failure: once the breaker lets
    requests go again (`breaker_wait_s`, 0 while it stays closed), at least one spacing on."""
    return max(breaker_wait_s, terms.spacing_s)


def after_publish_failure_s(settings: Settings) -> float:
    """How long the RefIds not published wait, and the drain task before it retries: the
    broker's outage is not eSMS's, so the breaker is left alone."""
    return settings.retry_base_s


def drain_gives_up(retries: int, settings: Settings) -> bool:
    """Whether a drain task that already retried `retries` times stops retrying; the
    account's own backoff (the breaker) decides when requests go again, not this count."""
    return retries >= settings.max_retries
