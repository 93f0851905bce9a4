"""Apply recorded pushes through the same state machine as polled answers.

A pushed RefId is leased like a polled one (Backlog.claim): whoever holds
the lease publishes and settles, so a push and a poll of the same RefId give one terminal event
whichever comes first. A RefId a request holds right now is left for later; one that already
had its terminal event is a duplicate. Events go out before the settle and the inbox entries
are acknowledged after it: a crash anywhere re-applies, never loses.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from esms_callbacks.accounts import Account
from esms_callbacks.engine.backlog import Backlog, Claimed, Tally
from esms_callbacks.engine.clock import Clock, as_datetime
from esms_callbacks.engine.settle_step import Publish, Step, publish_and_settle
from esms_callbacks.errors import PushApplyFailed
from esms_callbacks.esms.records import Outcome, outcome_of, progressed, state_rank
from esms_callbacks.events.publish import SOURCE_PUSH, build_event
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


@dataclass(frozen=True)
class _Step:
    claimed: Claimed
    outcome: Outcome
    event: dict[str, Any] | None
    entry_ids: list[str]
    due_s: float  # its turn, kept if the push is not final or its event does not go out

    @property
    def settle(self) -> Step:
        return Step(self.claimed.ref_id, self.outcome, self.event, self.due_s, self.due_s)


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
        )
        steps: list[_Step] = []
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
                steps.append(self._step(oa_id, claimed, entries, now_s))
        report.duplicates += counts["duplicate"]
        report.ignored += counts["ignored"]
        # As a drainer does: terminal states recorded before their events go out, then the
        # settle step both share (engine.settle_step).
        self.backlog.decide(
            oa_id,
            token,
            {
                step.claimed.ref_id: step.outcome.state_key
                for step in steps
                if step.outcome.terminal and step.claimed.state_key != step.outcome.state_key
            },
        )
        tally = Tally()
        for name, count in counts.items():
            if count:
                tally.counters[f"pushes_applied:{name}"] = count
        settled = publish_and_settle(
            self.backlog,
            self.publish,
            oa_id,
            token,
            now_s,
            [step.settle for step in steps],
            tally,
            count_published_as="pushes_applied:published",
        )
        published = len(settled.published)
        held_done = {step.ref_id for step in settled.steps}
        report.published += published
        report.settled += len(settled.steps)
        acked = [i for step in steps if step.claimed.ref_id in held_done for i in step.entry_ids]
        self._ack(done_with + acked, report)
        if settled.failure is not None:  # handed back to wait as they were; entries stay
            raise PushApplyFailed(f"could not publish push events: {settled.failure}") from (
                settled.failure
            )

    def _step(self, oa_id: str, claimed: Claimed, entries: list[InboxEntry], now_s: float) -> _Step:
        """The event a held RefId's pushes call for: the one furthest along wins (eSMS may
        deliver a retried 'waiting' after the final status)."""
        pushed = [(entry, outcome_of(entry.push.record)) for entry in entries if entry.push]
        entry, outcome = max(pushed, key=lambda step: state_rank(step[1].state_key))
        outcome = progressed(claimed.state_key, outcome)  # forward only, as a poll's
        event = None
        if outcome.terminal or outcome.state_key != claimed.state_key:
            submitted_at = (
                as_datetime(claimed.submitted_s)
                if claimed.kind == "waiting" and claimed.submitted_s
                else None
            )
            event = build_event(
                claimed.ref_id,
                oa_id,
                outcome,
                as_datetime(entry.received_s),
                submitted_at,
                source=SOURCE_PUSH,
                phone_numbers=self.settings.phone_numbers,
                account=self.account.name,
            )
        due_s = claimed.due_s or now_s
        return _Step(claimed, outcome, event, [e.entry_id for e in entries], due_s)

    def _ack(self, entry_ids: list[str], report: ApplyReport) -> None:
        self.inbox.ack(entry_ids)
        report.acked += entry_ids
