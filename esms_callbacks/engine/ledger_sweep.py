"""The sweep of an account's ledger at eSMS (GetSmsSentData_V2): no sent message left without
a status (ESMS_RECONCILE).

eSMS lists every message of the account by creation time, 500 a page, each with its
ReferenceId (the SmsId its send functions returned: our RefId), SendStatus and SendResult, but
no OA. The sweep reads it per SmsType (24, 25),
one range of creation times at a time, from a durable cursor (AccountKeys.ledger_cursor: the
range and the next page), so nothing is missed across restarts, failovers or a night it could
not run: a page is read again after a crash, never skipped, and each range starts
ESMS_RECONCILE_OVERLAP before the last one ended, so a record eSMS creates late is read. The
first range starts ESMS_RECONCILE_LOOKBACK back; a range spans a day at most; the last minute
is left for the next sweep (records still being created).

For each row, by where its RefId is (Backlog.locate, over every OA known):
- waiting, and the row is final (SendStatus 5 with SendResult 1 or 0, or 4): its state is
  settled through the one settle step, as source `reconcile` (SendResult 2 is not final);
- never submitted (a crash between the send and `.delay()`, an app that never integrated):
  remembered for the report (AccountKeys.unsubmitted); with `adopt`, taken in as if submitted,
  under the OA `-` (the ledger names none), deduplicated against what is waiting or done by
  the same claim a push makes (Backlog.claim), and tracked with QueryZnsStatus to a terminal
  event;
- done, or in a request right now: nothing.
The phone number and the message text never leave the client (esms.ledger drops them).
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import redis

from esms_callbacks.accounts import Account
from esms_callbacks.engine.backlog import DONE, Backlog, Tally
from esms_callbacks.engine.clock import Clock, as_datetime
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.notes import NO_OA, Note, Notes
from esms_callbacks.engine.paced import PacedSender, Send
from esms_callbacks.engine.redis_values import as_text
from esms_callbacks.engine.settle_step import Observed, Outcomes, Publish, SettleStep
from esms_callbacks.errors import RateLimited
from esms_callbacks.esms.records import PENDING, Outcome
from esms_callbacks.events.publish import SOURCE_RECONCILE
from esms_callbacks.settings import Settings
from esms_callbacks.terms import LEDGER
from esms_callbacks.tuning import (
    LEDGER_DONE_MARGIN_S,
    LEDGER_LAG_S,
    LEDGER_PAGE_SIZE,
    LEDGER_RANGE_MOST_S,
)

if TYPE_CHECKING:
    from esms_callbacks.esms.ledger import LedgerPage, LedgerRow

log = logging.getLogger(__name__)

SMS_TYPES = (24, 25)
DRAFT = 0  # SendStatus of a message not sent: neither reported nor adopted
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")  # the zone of the ledger's From and To
AskPage = Callable[[int, datetime, datetime, int], "Send[LedgerPage]"]


@dataclass
class SweepReport:
    pages: int = 0
    rows: int = 0
    unsubmitted: int = 0  # rows whose RefId was never submitted
    adopted: int = 0  # of them, taken in (`adopt`)
    settled: int = 0  # waiting RefIds the ledger's final states settled
    events: int = 0
    caught_up: bool = False  # every SmsType read up to a minute ago
    stopped: str = ""  # why it stopped before, if it did
    by_type: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerRange:
    sms_type: int
    from_ms: int
    to_ms: int
    page: int  # the next page to read; 0: the range is read


@dataclass
class LedgerSweep:
    settings: Settings
    account: Account
    backlog: Backlog
    notes: Notes
    publish: Publish
    clock: Clock
    sender: PacedSender  # GetSmsSentData_V2's own limiter
    ask_page: AskPage  # (SmsType, from, to, page) -> the request

    @property
    def _redis(self) -> redis.Redis:
        return self.backlog.client

    @property
    def _keys(self) -> AccountKeys:
        return self.backlog.keys

    def sweep(self, budget_s: float, keep_going: Callable[[], bool] = lambda: True) -> SweepReport:
        """Read the ledger from the cursor until caught up, `budget_s` runs out or
        `keep_going()` says no; take what each page says (the module's docstring)."""
        report = SweepReport()
        deadline_s = self.clock.now_s() + budget_s
        caught_up = 0
        for sms_type in SMS_TYPES:
            while True:
                ledger_range = self._range(sms_type, self.clock.now_s())
                if ledger_range is None:
                    caught_up += 1
                    break
                if self.clock.now_s() >= deadline_s or not keep_going():  # before each page
                    report.stopped = "budget used"
                    return report
                stopped = self._read_page(ledger_range, report)
                if stopped:
                    report.stopped = stopped
                    return report
        report.caught_up = caught_up == len(SMS_TYPES)
        self.forget_old_unsubmitted(self.clock.now_s())
        return report

    def _range(self, sms_type: int, now_s: float) -> LedgerRange | None:
        """The range being read for `sms_type`, a new one once the last is read, or None when
        the ledger is read up to LEDGER_LAG_S ago."""
        raw = {
            as_text(k): as_text(v) for k, v in self._redis.hgetall(self._keys.ledger_cursor).items()
        }
        until_ms = int((now_s - LEDGER_LAG_S) * 1000)
        to_key, page_key = f"to_ms:{sms_type}", f"page:{sms_type}"
        if to_key not in raw:  # the first sweep: ESMS_RECONCILE_LOOKBACK back
            from_ms = int((now_s - self.settings.reconcile_lookback_s) * 1000)
        elif int(raw.get(page_key) or 0) > 0:  # a range part read: go on with it
            return LedgerRange(
                sms_type, int(raw[f"from_ms:{sms_type}"]), int(raw[to_key]), int(raw[page_key])
            )
        else:
            last_to_ms = int(raw[to_key])
            if until_ms - last_to_ms < LEDGER_LAG_S * 1000:
                return None  # read up to a minute ago: nothing new enough yet
            from_ms = last_to_ms - int(self.settings.reconcile_overlap_s * 1000)
        # A RefId done before the done memory (ESMS_DONE_TTL) is forgotten: rows created
        # before it cannot be told from ones never submitted, so they are not read.
        remembered_ms = int((now_s - self.settings.done_ttl_s + LEDGER_DONE_MARGIN_S) * 1000)
        if from_ms < remembered_ms:
            log.warning(
                "the ledger sweep skips records created over ESMS_DONE_TTL ago (%.0f h): "
                "their RefIds' end is no longer remembered",
                self.settings.done_ttl_s / 3600,
            )
            from_ms = remembered_ms
        to_ms = min(until_ms, from_ms + int(LEDGER_RANGE_MOST_S * 1000))
        if to_ms <= from_ms:
            return None
        self._redis.hset(
            self._keys.ledger_cursor,
            mapping={f"from_ms:{sms_type}": from_ms, to_key: to_ms, page_key: 1},
        )
        return LedgerRange(sms_type, from_ms, to_ms, 1)

    def _read_page(self, at: LedgerRange, report: SweepReport) -> str:
        """Ask one page, take its rows, move the cursor past it; return why to stop, if so."""
        window = self.account.terms.endpoint(LEDGER).window
        bounds = None if window.always else window.bounds_at(as_datetime(self.clock.now_s()))
        if not window.always and bounds is None:
            return "the ledger's window is closed (ESMS_LEDGER_WINDOW)"
        window_s = (bounds[0].timestamp(), bounds[1].timestamp()) if bounds else None
        as_local = _vietnam_time
        send = self.ask_page(at.sms_type, as_local(at.from_ms), as_local(at.to_ms), at.page)
        answer = self.sender.send_all([(at.page, send)], window_s)[at.page]
        if isinstance(answer.error, RateLimited):  # eSMS saw us too close: back off
            extra_s = self.sender.limiter.widen_margin()
            log.warning(
                "eSMS answered 160 to the ledger; margin widened to +%.0f ms", extra_s * 1e3
            )
        if answer.error is not None:
            log.warning(
                "could not read eSMS's ledger (SmsType %d, page %d): %s; the sweep goes on from "
                "there next time",
                at.sms_type,
                at.page,
                answer.error,
            )
            return f"ledger request failed: {type(answer.error).__name__}"
        page = answer.value
        assert page is not None
        report.pages += 1
        report.rows += len(page.rows)
        self._take(page.rows, report)
        last = is_last_page(at.page, len(page.rows) + len(page.skipped), page.count_total)
        next_page = 0 if last else at.page + 1
        self._redis.hset(self._keys.ledger_cursor, f"page:{at.sms_type}", next_page)
        return ""

    def _take(self, rows: Sequence[LedgerRow], report: SweepReport) -> None:
        """What one page's rows say, for the RefIds waiting and those never submitted."""
        from esms_callbacks.esms.ledger import outcome_of_ledger

        # (a row without a ReferenceId names no RefId; a draft was never sent)
        rows = [row for row in rows if row.reference_id and row.send_status != DRAFT]
        located = self.backlog.locate([ref_of(row) for row in rows])
        finals = {
            ref_of(row): replace(outcome, record=None)  # the ledger's row is no record to show
            for row in rows
            if (outcome := outcome_of_ledger(row)) is not None
        }
        by_oa: defaultdict[str, list[LedgerRow]] = defaultdict(list)
        unsubmitted = [row for row in rows if ref_of(row) not in located]
        for row in rows:
            where = located.get(ref_of(row))
            if where is not None and where[1] != DONE and ref_of(row) in finals:
                by_oa[where[0]].append(row)
        if unsubmitted:
            report.unsubmitted += len(unsubmitted)
            self._remember_unsubmitted(unsubmitted)
        adopt = self.account.terms.reconcile == "adopt"
        if adopt and unsubmitted:
            self.notes.write(
                NO_OA,
                {ref_of(row): Note(sms_type=row.sms_type, by_query=True) for row in unsubmitted},
            )
            by_oa[NO_OA] += unsubmitted
        for oa_id, oa_rows in by_oa.items():
            self._settle(oa_id, oa_rows, finals, report, take_new=adopt and oa_id == NO_OA)

    def _settle(
        self,
        oa_id: str,
        rows: Sequence[LedgerRow],
        finals: dict[str, Outcome],
        report: SweepReport,
        take_new: bool,
    ) -> None:
        """Claim the rows' RefIds as a push does (Backlog.claim) and hand what the ledger says
        of those held to the settle step; they keep their turn to be asked."""
        token = uuid.uuid4().hex
        now_s = self.clock.now_s()
        by_ref = {ref_of(row): row for row in rows}
        # (a RefId submitted under its OA since the lookup is left there: one terminal event)
        claims = self.backlog.claim(
            oa_id,
            list(by_ref),
            now_s,
            self.settings.lease_s(self.account.terms),
            token,
            take_new,
            unless_elsewhere=take_new,
        )
        observed = []
        for claimed in claims:
            if not claimed.held:
                continue
            row = by_ref[claimed.ref_id]
            seen = finals.get(claimed.ref_id) or Outcome(PENDING, row.send_status, None, None)
            if claimed.kind == "new":
                report.adopted += 1
            observed.append(
                Observed(
                    claimed.ref_id,
                    seen,
                    now_s,
                    claimed.state_key,
                    claimed.submitted_s if claimed.kind == "waiting" else None,
                    keep_turn_s=claimed.due_s or now_s,
                )
            )
        step = SettleStep(self.settings, self.account, self.backlog, self.publish)
        tally = Tally()
        settled = step(
            Outcomes(
                SOURCE_RECONCILE,
                oa_id,
                token,
                observed,
                tally,
                count_published_as="reconcile:published",
            ),
            now_s,
        )
        report.events += len(settled.published)
        report.settled += sum(1 for item in settled.settled if item.ref_id in finals)
        if settled.failure is not None:  # handed back to wait; read again with the page
            raise settled.failure

    def _remember_unsubmitted(self, rows: Sequence[LedgerRow]) -> None:
        now_ms = int(self.clock.now_s() * 1000)
        scored: dict[Any, float] = {
            ref_of(row): (int(row.sent_at.timestamp() * 1000) if row.sent_at else now_ms)
            for row in rows
        }
        self._redis.zadd(self._keys.unsubmitted, scored)

    def forget_old_unsubmitted(self, now_s: float) -> None:
        """Keep the report's RefIds of the last ESMS_RECONCILE_LOOKBACK only."""
        before_ms = int((now_s - self.settings.reconcile_lookback_s) * 1000)
        self._redis.zremrangebyscore(self._keys.unsubmitted, "-inf", before_ms)


def is_last_page(page: int, rows_read: int, count_total: int) -> bool:
    """Whether page `page` (from 1) of a range ends it: by CountTotal (a page with unreadable
    rows skipped holds fewer than a page's worth, and is not the last), or an empty page."""
    return page * LEDGER_PAGE_SIZE >= count_total or rows_read == 0


def ref_of(row: LedgerRow) -> str:
    """A row's RefId: its ReferenceId (the rows without one are left out before)."""
    return row.reference_id or ""


def _vietnam_time(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, VIETNAM)
