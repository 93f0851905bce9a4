"""Apply recorded pushes through the same state machine as polled answers.

A pushed RefId is leased like a polled one (Backlog.claim): whoever holds
the lease publishes and settles, so a push and a poll of the same RefId give one terminal event
whichever comes first. A RefId a request holds right now is left for later; one that already
had its terminal event is a duplicate. The applier only produces outcomes; the settle step a
drainer's answer goes through too (engine.settle_step) records, publishes and settles them.
The inbox entries are acknowledged after the settle: a crash anywhere re-applies, never
loses.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

from esms_callbacks.accounts import Account
from esms_callbacks.engine.backlog import Backlog, Claimed, Tally
from esms_callbacks.engine.clock import Clock
from esms_callbacks.engine.settle_step import Observed, Outcomes, Publish, SettleStep
from esms_callbacks.errors import PushApplyFailed
from esms_callbacks.esms.records import outcome_of, state_rank
from esms_callbacks.events.publish import SOURCE_PUSH
from esms_callbacks.push.inbox import InboxEntry, PushInbox
from esms_callbacks.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class ApplyReport:
    published: int = 0  # events published
    settled: int = 0  # pushed RefIds whose state the push moved
    duplicates: int = 0  # the RefId already had its terminal event
    ignored: int = 0  # never submitted, and ESMS_PUSH_UNSUBMITTED=ignore
    deferred: int = 0  # a request holds the RefId: its entries stay for a later try
    unreadable: int = 0  # an entry that is not a push (dropped, counted)
    acked: list[str] = field(default_factory=list)


@dataclass
class PushApplier:
    settings: Settings
    account: Account
    backlog: Backlog
    inbox: PushInbox
    publish: Publish
    clock: Clock

    def apply(self, entries: list[InboxEntry]) -> ApplyReport:
        """Apply a batch of inbox entries; acknowledge those that are done with."""
        report = ApplyReport()
        unreadable = [entry.entry_id for entry in entries if entry.push is None]
        if unreadable:
            log.error("dropping %d inbox entries that are not pushes", len(unreadable))
            report.unreadable = len(unreadable)
            self._ack(unreadable, report)
        by_oa: defaultdict[str, defaultdict[str, list[InboxEntry]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for entry in entries:
            if entry.push is not None:
                by_oa[entry.push.oa_id][entry.push.ref_id].append(entry)
        failures = []
        for oa_id, by_ref in by_oa.items():
            try:
                self._apply_oa(oa_id, by_ref, report)
            except PushApplyFailed as exc:  # the other OAs of the batch still go
                failures.append(exc)
        if failures:
            raise failures[0]
        return report

    def _apply_oa(
        self, oa_id: str, by_ref: dict[str, list[InboxEntry]], report: ApplyReport
    ) -> None:
        token = uuid.uuid4().hex
        now_s = self.clock.now_s()
        claims = self.backlog.claim(
            oa_id,
            list(by_ref),
            now_s,
            self.settings.lease_s(self.account.terms),
            token,
            take_unsubmitted=self.settings.push_unsubmitted == "publish",
            # one never submitted but adopted from eSMS's ledger (OA `-`) stays there
            unless_elsewhere=self.settings.push_unsubmitted == "publish",
        )
        observed: list[Observed] = []
        done_with: list[str] = []  # entries to acknowledge without an event
        counts = {"duplicate": 0, "ignored": 0}
        for claimed in claims:
            entries = by_ref[claimed.ref_id]
            if claimed.kind == "busy":
                report.deferred += len(entries)
            elif not claimed.held:
                counts["duplicate" if claimed.kind == "done" else "ignored"] += len(entries)
                done_with += [entry.entry_id for entry in entries]
            else:
                observed.append(_observed(claimed, entries, now_s))
        report.duplicates += counts["duplicate"]
        report.ignored += counts["ignored"]
        tally = Tally()
        for name, count in counts.items():
            if count:
                tally.counters[f"pushes_applied:{name}"] = count
        # The settle step a drainer's answer goes through too (engine.settle_step).
        step = SettleStep(self.settings, self.account, self.backlog, self.publish)
        settled = step(
            Outcomes(
                SOURCE_PUSH,
                oa_id,
                token,
                observed,
                tally,
                count_published_as="pushes_applied:published",
            ),
            now_s,
        )
        report.published += len(settled.published)
        report.settled += len(settled.settled)
        self._ack(done_with + [i for item in settled.settled for i in item.context], report)
        if settled.failure is not None:  # handed back to wait as they were; entries stay
            raise PushApplyFailed(f"could not publish push events: {settled.failure}") from (
                settled.failure
            )

    def _ack(self, entry_ids: list[str], report: ApplyReport) -> None:
        self.inbox.ack(entry_ids)
        report.acked += entry_ids


def _observed(claimed: Claimed, entries: list[InboxEntry], now_s: float) -> Observed:
    """What a held RefId's pushes say: the one furthest along wins (eSMS may deliver a
    retried 'waiting' after the final status); it keeps its turn to be asked."""
    pushed = [(entry, outcome_of(entry.push.record)) for entry in entries if entry.push]
    entry, seen = max(pushed, key=lambda step: state_rank(step[1].state_key))
    submitted_s = claimed.submitted_s if claimed.kind == "waiting" else None
    return Observed(
        claimed.ref_id,
        seen,
        entry.received_s,
        claimed.state_key,
        submitted_s or None,
        keep_turn_s=claimed.due_s or now_s,
        context=tuple(e.entry_id for e in entries),
    )
