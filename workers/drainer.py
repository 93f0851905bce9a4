"""The drain loop: while the window is open and RefIds are due, send full requests at the rate.

One step: pick the OA due longest, reserve a rate slot, sleep until it, lease a full batch
under a fresh token, commit the slot once a connection is held (spacing and window checked on
the Redis clock), ask eSMS, renew the leases still held, publish their events, settle them.
Everything it touches is passed in, so tests can drive it with a manual clock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from workers.backlog import Backlog, Leased, Requeue
from workers.clock import Clock, as_datetime
from workers.errors import AccountError, EsmsError, NotReady, NotSent, TransientError
from workers.esms_client import CallbackAnswer
from workers.events import PublishFailed, build_event
from workers.keys import AccountKeys
from workers.limiter import RateLimiter
from workers.records import EXPIRED_OUTCOME, NOT_FOUND_OUTCOME, Outcome, outcome_of
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

    def drain(self, budget_s: float, keep_going: Callable[[], bool] = lambda: True) -> DrainReport:
        """Send requests until nothing is due, the window closes, `budget_s` runs out or
        `keep_going()` says no (this drainer lost its place)."""
        report = DrainReport()
        deadline_s = self.clock.now_s() + budget_s
        while self.clock.now_s() < deadline_s:
            stopped = self.step(report)
            if stopped:
                report.stopped = stopped
                return report
            if not keep_going():
                report.stopped = "lost its drainer place"
                return report
        report.stopped = "budget used"
        return report

    def step(self, report: DrainReport) -> str:
        """Send at most one request; return why draining should stop, or '' to go on."""
        now_s = self.clock.now_s()
        if self.redis.exists(self.keys.paused):
            return "account paused"
        backoff_until = self.redis.get(self.keys.backoff)
        if backoff_until is not None and float(backoff_until) > now_s:
            return "backing off after a failure"
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
        token = uuid.uuid4().hex
        batch = self.backlog.lease(
            oa_id,
            self.clock.now_s(),
            self.settings.max_refs_per_request,
            self.settings.lease_s,
            token,
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
            self.backlog.unlease(oa_id, token, ref_ids, self.clock.now_s())
            return "window closed"
        except EsmsError as exc:
            self._count_request(report, len(ref_ids), error=str(exc.code or type(exc).__name__))
            return self._failed(oa_id, token, batch, exc, report)
        for problem in answer.skipped:
            log.warning("skipped part of an eSMS answer for OA %s: %s", oa_id, problem)
        self._settle(oa_id, token, batch, answer.records, report)
        self._count_request(report, len(ref_ids))
        return ""

    def _failed(
        self, oa_id: str, token: str, batch: list[Leased], exc: EsmsError, report: DrainReport
    ) -> str:
        """Put the RefIds back to wait as the error deserves; return why to stop, if so.

        RefIds past their age get their one last answer now: expired, whatever the failure.
        """
        now_s = self.clock.now_s()
        expired = [item for item in batch if now_s >= self._expires_s(item)]
        ref_ids = [item.ref_id for item in batch if item not in expired]
        retry: Retry | None = None
        stopped = ""
        if isinstance(exc, NotReady):
            # Code 105, "SMSID not found yet", concerns these RefIds only: back off them alone.
            retry = Retry(exc, self.retry_delay_s())
            self.backlog.unlease(oa_id, token, ref_ids, now_s + retry.after_s)
        elif isinstance(exc, TransientError):
            # eSMS or the way to it is failing: the whole account backs off, not just this task.
            retry = Retry(exc, self.retry_delay_s())
            self.redis.set(
                self.keys.backoff, repr(now_s + retry.after_s), px=int(retry.after_s * 1000) + 1000
            )
            self.backlog.unlease(oa_id, token, ref_ids, now_s + retry.after_s)
        elif isinstance(exc, AccountError):
            pause_s = self.settings.account_pause_s
            self.redis.set(self.keys.paused, str(exc), px=int(pause_s * 1000))
            self.backlog.unlease(oa_id, token, ref_ids, now_s)
            log.error(
                "eSMS refused the account (%s); pausing requests for %.0fs, %d RefIds keep "
                "waiting. Fix the credentials, IP whitelist or balance.",
                exc,
                pause_s,
                len(ref_ids),
            )
            stopped = "account paused"
        else:  # RequestRejected: the same input would be refused again at once; ask later.
            delay_s = self.settings.repoll_after_s
            log.error(
                "eSMS rejected a request for OA %s (%s); its %d RefIds wait %.0fs",
                oa_id,
                exc,
                len(ref_ids),
                delay_s,
            )
            self.backlog.unlease(oa_id, token, ref_ids, now_s + delay_s)
        if expired:
            self._settle(oa_id, token, expired, {}, report)
        if retry is not None and ref_ids:
            raise retry from exc
        return stopped

    def _settle(
        self,
        oa_id: str,
        token: str,
        batch: list[Leased],
        records: dict[str, dict[str, Any]],
        report: DrainReport,
    ) -> None:
        """Publish the events of the RefIds still held, then settle them."""
        now_s = self.clock.now_s()
        # A lease that expired while we waited on eSMS belongs to someone else now: leave it.
        held = self.backlog.renew(
            oa_id, token, (item.ref_id for item in batch), now_s + self.settings.lease_s
        )
        observed_at = as_datetime(now_s)
        plan: list[tuple[Leased, Outcome, dict[str, Any] | None]] = []
        for item in batch:
            if item.ref_id not in held:
                continue
            record = records.get(item.ref_id)
            outcome = outcome_of(record) if record is not None else NOT_FOUND_OUTCOME
            if not outcome.terminal and now_s >= self._expires_s(item):
                outcome = EXPIRED_OUTCOME
            event = None
            if outcome.terminal or outcome.state_key != item.state_key:
                event = build_event(
                    item.ref_id, oa_id, outcome, observed_at, as_datetime(item.submitted_s)
                )
            plan.append((item, outcome, event))
        # Items with an event first: if publishing stops part way, the prefix that went out is
        # settled and only the rest is handed back.
        plan.sort(key=lambda step: step[2] is None)
        events = [event for _, _, event in plan if event is not None]
        published, failure = len(events), None  # type: tuple[int, Exception | None]
        try:
            self.publish(events)  # before settling: a crash here re-asks, never loses
        except PublishFailed as exc:  # the broker went away: settle what went out, retry later
            published, failure = exc.published, exc
        except Exception as exc:
            published, failure = 0, exc
        settled = plan if failure is None else plan[:published]
        finished = [item.ref_id for item, outcome, _ in settled if outcome.terminal]
        requeue = [
            Requeue(item.ref_id, self._next_ask_s(item, now_s), outcome.state_key)
            for item, outcome, _ in settled
            if not outcome.terminal
        ]
        self.backlog.settle(oa_id, token, now_s, finished, requeue)
        self._count_events(events[:published], report)
        if failure is not None:
            delay_s = self.retry_delay_s()
            rest = [item.ref_id for item, _, _ in plan[published:]]
            self.backlog.unlease(oa_id, token, rest, now_s + delay_s)
            raise Retry(failure, delay_s) from failure

    def _expires_s(self, item: Leased) -> float:
        return item.submitted_s + self.settings.max_age_s

    def _next_ask_s(self, item: Leased, now_s: float) -> float:
        # One last ask at the moment of expiry, so no RefId expires unasked.
        return max(now_s, min(now_s + self.settings.repoll_after_s, self._expires_s(item)))

    def _count_request(self, report: DrainReport, ref_count: int, error: str = "") -> None:
        """Best effort: counters never stand between an answer and its events."""
        report.requests += 1
        report.refs_asked += ref_count
        now_s = self.clock.now_s()
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(self.keys.stats, "requests", 1)
            pipe.hincrby(self.keys.stats, "refs_asked", ref_count)
            if error:
                pipe.hincrby(self.keys.stats, f"errors:{error}", 1)
            pipe.zadd(self.keys.recent, {f"{now_s:.6f}:{ref_count}": now_s})
            pipe.zremrangebyscore(self.keys.recent, "-inf", now_s - RECENT_S)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not update request counters: %s", exc)

    def _count_events(self, events: list[dict[str, Any]], report: DrainReport) -> None:
        report.events += len(events)
        by_status: dict[str, int] = {}
        for event in events:
            by_status[event["status"]] = by_status.get(event["status"], 0) + 1
        for status, count in by_status.items():
            report.by_status[status] = report.by_status.get(status, 0) + count
        try:
            pipe = self.redis.pipeline(transaction=False)
            for status, count in by_status.items():
                pipe.hincrby(self.keys.stats, f"events:{status}", count)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not update event counters: %s", exc)
