"""The drain loop: while the window is open and RefIds are due, send full requests at the rate.

One step: pick the OA due longest, reserve a rate slot, sleep until it, lease a full batch,
commit the slot (spacing and window checked on the Redis clock), ask eSMS, publish events,
settle. Everything it touches is passed in, so tests can drive it with a manual clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from workers.backlog import Backlog, Leased, Requeue
from workers.clock import Clock, as_datetime
from workers.errors import AccountError, EsmsError, NotSent, TransientError
from workers.esms_client import CallbackAnswer
from workers.events import build_event
from workers.keys import AccountKeys
from workers.limiter import RateLimiter
from workers.records import EXPIRED_OUTCOME, NOT_FOUND_OUTCOME, outcome_of
from workers.settings import Settings

log = logging.getLogger(__name__)
RECENT_S = 300  # how far back the rate actually used is measured

# ask(ref_ids, oa_id, gate): gate() is called right before the request is written; False
# means 'do not send' and the call raises NotSent.
AskEsms = Callable[[list[str], str, Callable[[], bool]], CallbackAnswer]
Publish = Callable[[list[dict[str, Any]]], None]


@dataclass
class DrainReport:
    requests: int = 0
    refs_asked: int = 0
    events: int = 0
    stopped: str = ""
    by_status: dict[str, int] = field(default_factory=dict)


class Retry(Exception):
    """A transient failure (eSMS or broker): the RefIds are back to wait; retry the drain
    after `after_s`."""

    def __init__(self, cause: Exception, after_s: float) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.after_s = after_s


@dataclass
class Drainer:
    settings: Settings
    redis: redis.Redis
    backlog: Backlog
    limiter: RateLimiter
    ask: AskEsms
    publish: Publish
    clock: Clock
    retry_delay_s: Callable[[], float] = lambda: 2.0

    @property
    def keys(self) -> AccountKeys:
        return AccountKeys(self.settings.account_id)

    @property
    def lease_s(self) -> float:
        """Long enough for one request (the HTTP timeout) and publishing its events, short
        enough that RefIds held by a dead worker are asked again promptly."""
        return self.settings.http_timeout_s * 2 + self.settings.spacing_s * 2 + 5.0

    def drain(self, budget_s: float, on_step: Callable[[], object] = lambda: None) -> DrainReport:
        """Send requests until nothing is due, the window closes or `budget_s` runs out."""
        report = DrainReport()
        deadline_s = self.clock.now_s() + budget_s
        while self.clock.now_s() < deadline_s:
            stopped = self.step(report)
            if stopped:
                report.stopped = stopped
                return report
            on_step()
        report.stopped = "budget used"
        return report

    def step(self, report: DrainReport) -> str:
        """Send at most one request; return why draining should stop, or '' to go on."""
        now_s = self.clock.now_s()
        if self.redis.exists(self.keys.paused):
            return "account paused"
        bounds = self.settings.window.bounds_at(as_datetime(now_s))
        if bounds is None:
            return "window closed"
        window_s = (
            None if self.settings.window.always else (bounds[0].timestamp(), bounds[1].timestamp())
        )
        oa_id = self.backlog.next_due_oa(now_s)
        if oa_id is None:
            return "nothing due"
        wait_s = self.limiter.reserve(not_after_s=window_s[1] if window_s else None)
        if wait_s is None:
            return "window closes before the next slot"
        self.clock.sleep(wait_s)
        batch = self.backlog.lease(
            oa_id, self.clock.now_s(), self.settings.max_refs_per_request, self.lease_s
        )
        if not batch:
            return ""  # another drainer took them; the slot goes unused
        ref_ids = [item.ref_id for item in batch]

        def gate() -> bool:
            """Commit the slot at the last moment before the request is written."""
            while not (commit := self.limiter.commit(window_s)).go:
                if commit.closed:
                    return False
                self.clock.sleep(commit.wait_s)
            return True

        try:
            answer = self.ask(ref_ids, oa_id, gate)
        except NotSent:
            self.backlog.unlease(oa_id, ref_ids, self.clock.now_s())
            return "window closed"
        except EsmsError as exc:
            self._count_request(report, len(ref_ids))
            self._count(f"errors:{exc.code or type(exc).__name__}", 1)
            return self._failed(oa_id, ref_ids, exc)
        self._count_request(report, len(ref_ids))
        for problem in answer.skipped:
            log.warning("skipped part of an eSMS answer for OA %s: %s", oa_id, problem)
        self._settle(oa_id, batch, answer, report)
        return ""

    def _failed(self, oa_id: str, ref_ids: list[str], exc: EsmsError) -> str:
        """Put the RefIds back to wait as the error deserves; return why to stop, if so."""
        now_s = self.clock.now_s()
        if isinstance(exc, TransientError):
            delay_s = self.retry_delay_s()
            self.backlog.unlease(oa_id, ref_ids, now_s + delay_s)
            raise Retry(exc, delay_s) from exc
        if isinstance(exc, AccountError):
            pause_s = self.settings.account_pause_s
            self.redis.set(self.keys.paused, str(exc), px=int(pause_s * 1000))
            self.backlog.unlease(oa_id, ref_ids, now_s)
            log.error(
                "eSMS refused the account (%s); pausing requests for %.0fs, %d RefIds keep "
                "waiting. Fix the credentials, IP whitelist or balance.",
                exc,
                pause_s,
                len(ref_ids),
            )
            return "account paused"
        # RequestRejected: the same input would be refused again at once; ask later.
        delay_s = self.settings.repoll_after_s
        log.error(
            "eSMS rejected a request for OA %s (%s); its %d RefIds wait %.0fs",
            oa_id,
            exc,
            len(ref_ids),
            delay_s,
        )
        self.backlog.unlease(oa_id, ref_ids, now_s + delay_s)
        return ""

    def _count_request(self, report: DrainReport, ref_count: int) -> None:
        now_s = self.clock.now_s()
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(self.keys.stats, "requests", 1)
        pipe.hincrby(self.keys.stats, "refs_asked", ref_count)
        pipe.zadd(self.keys.recent, {f"{now_s:.6f}:{ref_count}": now_s})
        pipe.zremrangebyscore(self.keys.recent, "-inf", now_s - RECENT_S)
        pipe.execute()
        report.requests += 1
        report.refs_asked += ref_count

    def _settle(
        self, oa_id: str, batch: list[Leased], answer: CallbackAnswer, report: DrainReport
    ) -> None:
        now_s = self.clock.now_s()
        observed_at = as_datetime(now_s)
        events, finished, requeue = [], [], []
        for item in batch:
            record = answer.records.get(item.ref_id)
            outcome = outcome_of(record) if record is not None else NOT_FOUND_OUTCOME
            expires_s = item.submitted_s + self.settings.max_age_s
            if not outcome.terminal and now_s >= expires_s:
                outcome = EXPIRED_OUTCOME
            if outcome.terminal or outcome.state_key != item.state_key:
                events.append(
                    build_event(
                        item.ref_id, oa_id, outcome, observed_at, as_datetime(item.submitted_s)
                    )
                )
                report.by_status[outcome.status] = report.by_status.get(outcome.status, 0) + 1
            if outcome.terminal:
                finished.append(item.ref_id)
            else:
                # One last ask at the moment of expiry, so no RefId expires unasked.
                due_s = max(now_s, min(now_s + self.settings.repoll_after_s, expires_s))
                requeue.append(Requeue(item.ref_id, due_s, outcome.state_key))
        try:
            self.publish(events)  # before settling: a crash here re-asks, never loses
        except Exception as exc:  # the broker is down: hand the RefIds back, retry later
            delay_s = self.retry_delay_s()
            self.backlog.unlease(oa_id, [item.ref_id for item in batch], now_s + delay_s)
            raise Retry(exc, delay_s) from exc
        self.backlog.settle(oa_id, finished, requeue)
        report.events += len(events)
        for event in events:
            self._count(f"events:{event['status']}", 1)

    def _count(self, name: str, amount: int) -> None:
        self.redis.hincrby(self.keys.stats, name, amount)
