"""The drain loop: while the window is open and RefIds are due, send full requests at the rate.

One step: reserve a rate slot and sleep until it; then, at the moment of sending, lease a full
batch of the OA due longest under a fresh token (nothing due: hand the slot back); commit the
slot right before the request is written (pause, breaker, window and spacing checked
atomically on the Redis clock; a commit granted for a moment just ahead waits for it
exactly); ask eSMS; hand what the answer says of each RefId to the settle step
(engine.settle_step), which records, publishes and settles, with the request's counters.
Everything it touches is passed in, so tests can drive it with a manual clock.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis

from esms_callbacks.accounts import Account
from esms_callbacks.engine.backlog import Backlog, Leased, Tally
from esms_callbacks.engine.clock import Clock, as_datetime
from esms_callbacks.engine.health import AccountPause, Breaker
from esms_callbacks.engine.limiter import Commit, RateLimiter
from esms_callbacks.engine.message_asks import MessageAsks
from esms_callbacks.engine.notes import Note, Notes, note_of
from esms_callbacks.engine.routes import Routed, lead_endpoint, route
from esms_callbacks.engine.settle_step import (
    Observed,
    Outcomes,
    Publish,
    SettleStep,
    expires_at_s,
)
from esms_callbacks.engine.stats import RequestStats
from esms_callbacks.errors import (
    EsmsError,
    NotReady,
    NotSent,
    Retry,
    printable,
)
from esms_callbacks.esms.records import (
    EXPIRED_OUTCOME,
    NOT_FOUND_OUTCOME,
    Outcome,
    given_up_outcome,
    outcome_of,
)
from esms_callbacks.events.publish import SOURCE_POLL
from esms_callbacks.retry_policy import (
    PAUSE,
    REPOLL,
    RETRY,
    WAIT_FOR_WINDOW,
    Decision,
    after_publish_failure_s,
    decide,
    gives_up,
    lone_retry_after_s,
    retry_after_s,
    split_after_s,
)
from esms_callbacks.settings import Settings
from esms_callbacks.terms import CALLBACK, QUERY_FALLBACK
from esms_callbacks.tuning import (
    RECENT_KEEP_S,
    REQUEST_TIME_WEIGHT,
    WAKE_EARLY_SHARE,
    WINDOW_EDGE_S,
)

if TYPE_CHECKING:  # aiohttp stays out of producers, which import the tasks but never ask eSMS
    from esms_callbacks.esms.client import CallbackAnswer

log = logging.getLogger(__name__)

# ask(ref_ids, oa_id, gate, on_sent): gate() is called right before the request is written;
# False means 'do not send' and the call raises NotSent. on_sent() is called once the request
# is in the socket.
AskEsms = Callable[
    [list[str], str, Callable[[], bool], Callable[[], None] | None], "CallbackAnswer"
]


@dataclass
class DrainReport:
    requests: int = 0
    refs_asked: int = 0
    events: int = 0
    stopped: str = ""
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class SentRequest:
    started_s: float  # when its slot came (drainer clock)
    sent_at_s: float  # when the limiter committed it (Redis clock)
    error: str = ""  # the eSMS code, for an answer that is an error for every RefId (105)


@dataclass
class Drainer:
    settings: Settings
    account: Account
    backlog: Backlog
    limiter: RateLimiter
    breaker: Breaker
    pause: AccountPause
    stats: RequestStats
    ask: AskEsms
    publish: Publish
    clock: Clock
    request_time_s: float | None = None  # this drainer's running average, slot to settled
    # QueryZnsStatus and GetZaloMessageStatus (engine.message_asks) and what they need to
    # know of each RefId (engine.notes); None: GetCallback alone asks (tests of it alone).
    message_asks: MessageAsks | None = None
    notes: Notes | None = None

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
        terms = self.account.terms
        bounds = terms.drain_window.bounds_at(as_datetime(self.clock.now_s()))
        if bounds is None:
            return "window closed"
        window_s = self._guarded(bounds)
        if window_s and self.clock.now_s() < window_s[0]:  # just opened: inside the guard
            self.clock.sleep(window_s[0] - self.clock.now_s())
        # An account that asks GetCallback waits for its slot first (QueryZnsStatus's own
        # requests are paced one by one: engine.paced).
        by_callback_first = self.message_asks is None or lead_endpoint(terms) == CALLBACK
        if by_callback_first:
            wait_s = self.limiter.reserve(not_after_s=window_s[1] if window_s else None)
            if wait_s is None:
                return "window closes before the next slot"
            # Wake a little early: leasing and taking a connection are done when the slot
            # comes, and the commit decides the moment on the Redis clock.
            self.clock.sleep(wait_s - min(wait_s, terms.spacing_s * WAKE_EARLY_SHARE))
        # The batch is chosen now, at the slot, not before sleeping toward it: whichever OA
        # is due longest at the moment of sending gets it.
        started_s = self.clock.now_s()
        token = uuid.uuid4().hex
        picked = self.backlog.lease_next(
            started_s, terms.max_refs_per_request, self.settings.lease_s(terms), token
        )
        if picked is None:
            if by_callback_first:
                self.limiter.hand_back()
            return "nothing due"
        oa_id, leased = picked
        notes = self._notes_of(oa_id, leased)
        routed = route(leased, notes, terms, oa_id) if self.message_asks else Routed(list(leased))
        if not routed.callback:
            if by_callback_first:
                self.limiter.hand_back()
            return self._settle(oa_id, token, [], {}, report, None, routed=routed, notes=notes)
        batch = routed.callback
        ref_ids = [item.ref_id for item in batch]
        others = [item.ref_id for item in routed.query + routed.delivery]
        commits: list[Commit] = []

        def gate() -> bool:
            """Commit the slot at the last moment before the request is written."""
            while True:
                commit = self.limiter.commit(window_s)
                commits.append(commit)
                if commit.go:  # granted for a moment just ahead: leave at that moment
                    self.clock.sleep_exactly(commit.wait_s)
                    return True
                if commit.refused:
                    return False
                self.clock.sleep(commit.wait_s)

        def on_sent() -> None:
            """Count the spacing to the next request from this write (dated as late as it can
            have been): a busy CPU between commit and write must not bring two requests closer
            at eSMS."""
            try:
                self.limiter.mark_sent(commits[-1].at_us)
            except redis.RedisError as exc:  # the commit's time stands; the margin covers it
                log.warning("could not record when a request left: %s", exc)

        try:
            answer = self.ask(ref_ids, oa_id, gate, on_sent)
        except NotSent:
            self.backlog.unlease(oa_id, token, ref_ids + others, self.clock.now_s())
            self.limiter.hand_back()
            return commits[-1].refused if commits else "not sent"
        except NotReady as exc:
            # Code 105: eSMS knows none of these SMSIDs yet. Each is not found, like a RefId an
            # answer leaves out, and asked again after ESMS_REPOLL_AFTER.
            sent = SentRequest(started_s, _sent_at(commits, started_s), error=str(exc.code))
            return self._settle(oa_id, token, batch, {}, report, sent, routed=routed, notes=notes)
        except EsmsError as exc:
            report.requests += 1
            report.refs_asked += len(ref_ids)
            error = str(exc.code or type(exc).__name__)
            sent_at_s = _sent_at(commits, started_s)
            self.stats.count_failure(len(ref_ids), error, sent_at_s, self.clock.now_s())
            # the others are asked at the next step, their endpoints unaffected
            self.backlog.unlease(oa_id, token, others, self.clock.now_s())
            return self._failed(oa_id, token, batch, exc, report)
        for problem in answer.skipped:
            log.warning("skipped part of an eSMS answer for OA %s: %s", oa_id, problem)
        sent = SentRequest(started_s, _sent_at(commits, started_s))
        return self._settle(
            oa_id, token, batch, answer.records, report, sent, routed=routed, notes=notes
        )

    def _failed(
        self, oa_id: str, token: str, batch: list[Leased], exc: EsmsError, report: DrainReport
    ) -> str:
        """Put the RefIds back to wait as the retry policy decides (retry_policy);
        return why to stop, if so.

        RefIds past their age get their one last answer now: expired, whatever the failure.
        A failure that may come from one of the RefIds strikes them all (split later), and a
        RefId that eSMS kept failing alone, for minutes, while it answered others is given
        up (_suspect).
        """
        now_s = self.clock.now_s()
        expired = [item for item in batch if now_s >= self._expires_s(item)]
        live = [item for item in batch if item not in expired]
        decision = decide(exc, self.settings, self.account.terms, self._near_window_edge(now_s))
        requeue_after_s = decision.requeue_after_s
        # Whether the account's request before this one was answered: then this failure is
        # this batch's own, not eSMS being down.
        answering: bool | None = None
        retry: Retry | None = None
        if decision.kind == RETRY:
            if decision.widen_margin:  # eSMS saw us too close: widen the margin
                extra_s = self.limiter.widen_margin()
                log.warning("eSMS answered 160; rate margin widened to +%.0f ms", extra_s * 1000)
            wait_s = 0.0
            if live and all(item.strikes for item in live):
                answering = self.breaker.failures_in_a_row() == 0
            if not answering:  # a batch being split while eSMS answers the others: not counted
                failure = self.breaker.record_failure(decision.hold_s)
                answering, wait_s = failure.in_a_row == 1, failure.wait_s
                if failure.wait_s:
                    log.warning(
                        "eSMS failed %d times in a row (%s); no request for %.1fs, then one probe",
                        failure.in_a_row,
                        exc,
                        failure.wait_s,
                    )
            retry = Retry(exc, retry_after_s(self.account.terms, wait_s))
        elif decision.kind == PAUSE:
            self.pause.pause(str(exc), decision.pause_s)  # before the RefIds are due again
            log.error(
                "eSMS refused the account (%s); pausing requests for %.0fs, %d RefIds keep "
                "waiting. Fix the credentials, IP whitelist or balance.",
                exc,
                decision.pause_s,
                len(live),
            )
        elif decision.kind == WAIT_FOR_WINDOW:
            # eSMS's clock and ours disagree about the window: this is "not now", not bad
            # input. The RefIds wait for the window, not ESMS_REPOLL_AFTER.
            log.warning(
                "eSMS refused a request at the window's edge (%s); its %d RefIds wait for the "
                "window",
                exc,
                len(live),
            )
        given_up: dict[str, Outcome] = {}
        if decision.suspects_refs and live:
            if len(live) == 1 and answering is None:
                answering = self.breaker.failures_in_a_row() == 0
            requeue_after_s, given_up = self._suspect(
                oa_id, token, live, exc, decision, bool(answering), now_s
            )
        if decision.kind == REPOLL and not given_up:  # REPOLL: refused again at once; later
            log.error(
                "eSMS rejected a request for OA %s (%s); its %d RefIds wait %.0fs",
                oa_id,
                exc,
                len(live),
                requeue_after_s,
            )
        ref_ids = [item.ref_id for item in live if item.ref_id not in given_up]
        self.backlog.unlease(oa_id, token, ref_ids, now_s + requeue_after_s)
        finished = expired + [item for item in live if item.ref_id in given_up]
        if finished:
            self._settle(oa_id, token, finished, {}, report, None, given_up)
        if retry is not None and ref_ids:
            raise retry from exc
        return decision.stop

    def _suspect(
        self,
        oa_id: str,
        token: str,
        live: list[Leased],
        exc: EsmsError,
        decision: Decision,
        answering: bool,
        now_s: float,
    ) -> tuple[float, dict[str, Outcome]]:
        """Strike the RefIds of a failure that may be one of theirs; return how long they
        wait, and the one given up, if so.

        A request that carried one RefId alone, failed while eSMS answered the account's
        others, is evidence against it: it waits longer each time (lone_retry_after_s), and
        is given up only once that evidence spans minutes (gives_up). A failure eSMS gives
        other requests too is eSMS's trouble, never the RefId's."""
        lone = len(live) == 1
        strikes = self.backlog.strike(
            oa_id, token, [item.ref_id for item in live], now_s, lone=lone and answering
        )
        requeue_after_s = decision.requeue_after_s
        if decision.kind == REPOLL and (len(live) > 1 or live[0].strikes):
            requeue_after_s = split_after_s(self.settings)  # split soon, not in 15 min
        struck = strikes.get(live[0].ref_id) if lone else None
        if struck is None or not answering:
            return requeue_after_s, {}
        requeue_after_s = max(requeue_after_s, lone_retry_after_s(self.settings, struck.alone))
        if not gives_up(struck.alone, struck.alone_since_s, now_s):
            return requeue_after_s, {}
        ref_id = live[0].ref_id
        minutes = (now_s - (struck.alone_since_s or now_s)) / 60
        log.error(
            "gave up RefId %s of OA %s: eSMS failed it alone %d times in %.0f min while it "
            "answered others (%s)",
            printable(ref_id, 60),
            printable(oa_id, 60),
            struck.alone,
            minutes,
            type(exc).__name__,
        )
        reason = (
            f"given up: eSMS failed all {struck.count} requests that carried this RefId, "
            f"{struck.alone} of them with it alone over {minutes:.0f} min while it answered "
            f"others ({exc})"
        )
        return requeue_after_s, {ref_id: given_up_outcome(exc.code, reason)}

    def _settle(
        self,
        oa_id: str,
        token: str,
        batch: list[Leased],
        records: dict[str, dict[str, Any]],
        report: DrainReport,
        sent: SentRequest | None,
        given_up: Mapping[str, Outcome] | None = None,
        routed: Routed | None = None,
        notes: Mapping[str, Note] | None = None,
    ) -> str:
        """Hand what the answer says of each RefId (`given_up`: RefIds ended without an
        answer, see _failed) to the settle step, with the request's counters (`sent`, if one
        was): it publishes the events of those still held, then settles them, in one round
        trip with the counters. The RefIds `routed` to the other endpoints, and those
        GetCallback left out when QueryZnsStatus is its fallback, are asked there first and
        settled in the same step (engine.message_asks). Return why to stop, if so."""
        now_s = self.clock.now_s()
        given_up = given_up or {}
        observed = [
            Observed(
                item.ref_id,
                given_up.get(item.ref_id) or _seen(records.get(item.ref_id)),
                now_s,
                item.state_key,
                item.submitted_s,
            )
            for item in batch
        ]
        tally = Tally(recent_keep_s=RECENT_KEEP_S)
        if sent is not None:
            self._count_request(tally, report, len(batch), now_s, sent)
        stopped = ""
        if routed is not None and self.message_asks is not None:
            observed, stopped = self._ask_messages(
                oa_id, token, batch, records, observed, routed, notes or {}, tally
            )
        step = SettleStep(self.settings, self.account, self.backlog, self.publish)
        asked = sent is not None or (bool(observed) and routed is not None)
        settled = step(Outcomes(SOURCE_POLL, oa_id, token, observed, tally, asked=asked), now_s)
        report.events += len(settled.published)
        for event in settled.published:
            status = event["status"]
            report.by_status[status] = report.by_status.get(status, 0) + 1
        if settled.failure is not None:  # the broker went away: retry later
            delay_s = after_publish_failure_s(self.settings)
            raise Retry(settled.failure, delay_s) from settled.failure
        return stopped

    def _notes_of(self, oa_id: str, leased: list[Leased]) -> dict[str, Note]:
        if self.notes is None or self.message_asks is None:
            return {}
        return self.notes.read(oa_id, [item.ref_id for item in leased])

    def _ask_messages(
        self,
        oa_id: str,
        token: str,
        batch: list[Leased],
        records: Mapping[str, dict[str, Any]],
        observed: list[Observed],
        routed: Routed,
        notes: Mapping[str, Note],
        tally: Tally,
    ) -> tuple[list[Observed], str]:
        """Ask QueryZnsStatus and GetZaloMessageStatus what they are routed (and, with
        `fallback`, the RefIds GetCallback left out); return every RefId's observation and
        why to stop, if so. What the answers taught is noted before anything is settled;
        RefIds whose request failed are handed back to wait."""
        assert self.message_asks is not None and self.notes is not None
        terms = self.account.terms
        # A GetCallback record teaches Zalo's message id, which only delivery tracking needs:
        # noted then alone (a note is a write, and memory while the RefId waits).
        learnt = {}
        if terms.track_delivery:
            learnt = {
                ref_id: note for ref_id, record in records.items() if (note := note_of(record))
            }
        by_query = list(routed.query)
        if terms.query_status == QUERY_FALLBACK:
            left_out = {item.ref_id for item in batch if item.ref_id not in records}
            by_query += [item for item in batch if item.ref_id in left_out]
            observed = [item for item in observed if item.ref_id not in left_out]
        answers = self.message_asks.ask(oa_id, by_query, routed.delivery, notes, self.clock)
        for ref_id, note in answers.notes.items():
            learnt[ref_id] = learnt.get(ref_id, Note()).learnt(note)
        self.notes.write(
            oa_id,
            {
                ref_id: notes.get(ref_id, Note()).learnt(note)
                for ref_id, note in learnt.items()
                if notes.get(ref_id, Note()).learnt(note) != notes.get(ref_id)
            },
        )
        # A RefId past its age gets its one last answer now, whatever its request did: expired
        # (as _failed does for GetCallback), never handed back for ever.
        now_s = self.clock.now_s()
        leased = {item.ref_id: item for item in [*by_query, *routed.delivery]}
        expired = [
            Observed(item.ref_id, EXPIRED_OUTCOME, now_s, item.state_key, item.submitted_s)
            for ref_id in answers.back
            if now_s >= self._expires_s(item := leased[ref_id])
        ]
        back: dict[float, list[str]] = {}
        for ref_id, due_s in answers.back.items():
            if ref_id not in {gone.ref_id for gone in expired}:
                back.setdefault(due_s, []).append(ref_id)
        for due_s, ref_ids in back.items():
            self.backlog.unlease(oa_id, token, ref_ids, due_s)
        for name, count in answers.counters.items():
            tally.counters[name] = tally.counters.get(name, 0) + count
        return observed + answers.observed + expired, answers.stopped

    def _guarded(self, bounds: tuple[datetime, datetime]) -> tuple[float, float] | None:
        """The open window, shrunk by ESMS_WINDOW_GUARD at both ends (epoch s), so that no
        request reaches eSMS outside it whatever its clock; None if there is no window."""
        if self.account.terms.drain_window.always:
            return None
        guard_s = self.settings.window_guard_s
        return bounds[0].timestamp() + guard_s, bounds[1].timestamp() - guard_s

    def _near_window_edge(self, now_s: float) -> bool:
        if self.account.terms.window.always:
            return False
        bounds = self.account.terms.window.bounds_at(as_datetime(now_s))
        if bounds is None:
            return True
        opens_s, closes_s = bounds[0].timestamp(), bounds[1].timestamp()
        return min(now_s - opens_s, closes_s - now_s) < WINDOW_EDGE_S

    def _expires_s(self, item: Leased) -> float:
        return expires_at_s(self.settings, item.submitted_s)

    def _count_request(
        self, tally: Tally, report: DrainReport, ref_count: int, now_s: float, sent: SentRequest
    ) -> None:
        report.requests += 1
        report.refs_asked += ref_count
        tally.counters["requests"] = 1
        tally.counters["refs_asked"] = ref_count
        if sent.error:
            tally.counters[f"errors:{sent.error}"] = 1
        took_s = now_s - sent.started_s
        previous_s = self.request_time_s if self.request_time_s is not None else took_s
        self.request_time_s = previous_s + REQUEST_TIME_WEIGHT * (took_s - previous_s)
        tally.gauges["request_time_s"] = f"{self.request_time_s:.6f}"
        # Any answer, even one committed before others failed, says eSMS is up again.
        tally.answered = True
        tally.recent_member = f"{sent.sent_at_s:.6f}:{ref_count}"


def _seen(record: dict[str, Any] | None) -> Outcome:
    """What an answer says of a RefId: its record's status, or not found when it left it out."""
    return outcome_of(record) if record is not None else NOT_FOUND_OUTCOME


def _sent_at(commits: list[Commit], default_s: float) -> float:
    """The Redis time the request was committed at (an `ask` may skip the gate in tests)."""
    return commits[-1].at_s if commits and commits[-1].go else default_s
