"""The settle step: the one owner of "only the lease holder publishes and settles".

Every status source (a request's answer, an applied push, and whichever source comes next)
only produces outcomes: per RefId it holds under one token, what it saw and when
(`Outcomes`). The step alone, in this order:

1. moves each RefId's state forward only (records.progressed: a terminal state recorded
   before a crash stands), and expires a RefId past ESMS_MAX_AGE that its source asks for;
2. renews the leases still held and records their terminal states, in one round trip,
   before any event goes out: whoever holds a RefId after a crash publishes the same state
   again, never another one. A RefId no longer held is left to its holder, without an event;
3. builds the event of each RefId whose state is terminal or changed (events.publish);
4. publishes them, then settles what went out (terminal ones remembered as done, the others
   due again) with the source's counters; if publishing stops part way, the prefix whose
   events went out is settled and the rest handed back, so a crash or a broker outage
   re-asks, never loses, and no RefId is settled with an event the broker did not take.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from esms_callbacks.accounts import Account
from esms_callbacks.engine.backlog import Backlog, Requeue, Tally
from esms_callbacks.engine.clock import as_datetime
from esms_callbacks.engine.notes import NO_OA
from esms_callbacks.errors import PublishFailed
from esms_callbacks.esms.records import EXPIRED_OUTCOME, Outcome, progressed
from esms_callbacks.events.publish import build_event, event_summary
from esms_callbacks.retry_policy import after_publish_failure_s
from esms_callbacks.settings import Settings

Publish = Callable[[list[dict[str, Any]]], None]


def expires_at_s(settings: Settings, submitted_s: float) -> float:
    """When a RefId submitted at `submitted_s` gets its last answer (ESMS_MAX_AGE)."""
    return submitted_s + settings.max_age_s


@dataclass(frozen=True)
class Observed:
    """What a source observed about one RefId it holds."""

    ref_id: str
    seen: Outcome  # what the source says now; the step moves the state forward only
    observed_s: float  # when the source observed it (the event's observed_at)
    state_key: str  # the state recorded for it when the source took it ('' if none)
    submitted_s: float | None  # when it was submitted (the event's submitted_at), if known
    # A source that only hears (a push) keeps the RefId's turn: due again then, if its state
    # stays non-terminal or its event does not go out. None (a source that asks eSMS): the
    # step sets its next ask (ESMS_REPOLL_AFTER on, one last at its expiry) and expires it
    # past ESMS_MAX_AGE.
    keep_turn_s: float | None = None
    context: tuple[str, ...] = ()  # the source's own, handed back once settled (inbox entries)
    source: str = ""  # who saw it, when not the Outcomes' source (a step that asked two)


@dataclass(frozen=True)
class Outcomes:
    """The step's input: one source's outcomes for RefIds of one OA it holds under `token`."""

    source: str  # where the statuses came from (events.publish: SOURCE_POLL, SOURCE_PUSH)
    oa_id: str
    token: str
    observed: Sequence[Observed]
    tally: Tally = field(default_factory=Tally)  # what the source adds to the account's stats
    asked: bool = False  # eSMS was just asked for every one of them (counted in their asks)
    count_published_as: str = ""  # a stats counter of every event published, if wanted


@dataclass(frozen=True)
class Settled:
    published: list[dict[str, Any]]  # the events that went out
    settled: list[Observed]  # the RefIds settled: their event, if any, went out
    failure: Exception | None  # why publishing stopped, if it did


@dataclass(frozen=True)
class _Step:
    observed: Observed
    outcome: Outcome
    event: dict[str, Any] | None  # None: nothing new to publish
    due_s: float  # when it is asked again, if not terminal
    hand_back_s: float  # when it is due again, if its event did not go out


@dataclass(frozen=True)
class SettleStep:
    settings: Settings
    account: Account
    backlog: Backlog
    publish: Publish

    def __call__(self, outcomes: Outcomes, now_s: float) -> Settled:
        """Record, build, publish and settle `outcomes` (see the module's docstring)."""
        moved = [(item, self._outcome(outcomes, item, now_s)) for item in outcomes.observed]
        held = self.backlog.renew(
            outcomes.oa_id,
            outcomes.token,
            (item.ref_id for item in outcomes.observed),
            now_s + self.settings.lease_s(self.account.terms),
            {
                item.ref_id: outcome.state_key
                for item, outcome in moved
                if outcome.terminal and item.state_key != outcome.state_key
            },
        )
        steps = [
            self._step(outcomes, item, outcome, now_s)
            for item, outcome in moved
            if item.ref_id in held
        ]
        return self._publish_and_settle(outcomes, steps, now_s)

    def _tracks_delivery(self, oa_id: str) -> bool:
        """Whether `sent` awaits `delivered` for this OA's RefIds: with ESMS_TRACK_DELIVERY,
        unless the OA is unknown (RefIds adopted from eSMS's ledger: GetZaloMessageStatus
        needs the OA, so their `sent` is final, in events of version 1)."""
        return self.account.terms.track_delivery and oa_id != NO_OA

    def _outcome(self, outcomes: Outcomes, item: Observed, now_s: float) -> Outcome:
        """The RefId's state after what its source saw: forward only; a RefId past its age
        that its source asks for expires (its one last answer)."""
        outcome = progressed(item.state_key, item.seen, self._tracks_delivery(outcomes.oa_id))
        if outcome.terminal or item.keep_turn_s is not None or item.submitted_s is None:
            return outcome
        if now_s >= expires_at_s(self.settings, item.submitted_s):
            return EXPIRED_OUTCOME
        return outcome

    def _step(self, outcomes: Outcomes, item: Observed, outcome: Outcome, now_s: float) -> _Step:
        event = None
        if outcome.terminal or outcome.state_key != item.state_key:
            event = build_event(
                item.ref_id,
                outcomes.oa_id,
                outcome,
                as_datetime(item.observed_s),
                as_datetime(item.submitted_s) if item.submitted_s is not None else None,
                source=item.source or outcomes.source,
                phone_numbers=self.settings.phone_numbers,
                account=self.account.name,
                track_delivery=self._tracks_delivery(outcomes.oa_id),
            )
        if item.keep_turn_s is not None:
            return _Step(item, outcome, event, item.keep_turn_s, item.keep_turn_s)
        due_s = now_s + self.settings.repoll_after_s
        if item.submitted_s is not None:  # one last ask at the moment of expiry: none unasked
            due_s = max(now_s, min(due_s, expires_at_s(self.settings, item.submitted_s)))
        return _Step(item, outcome, event, due_s, now_s + after_publish_failure_s(self.settings))

    def _publish_and_settle(
        self, outcomes: Outcomes, steps: Sequence[_Step], now_s: float
    ) -> Settled:
        """Publish (steps with an event first), settle what went out with the source's tally
        (plus a count of the events by status, and of all of them as `count_published_as`,
        in the same round trip), hand back the rest."""
        ordered = sorted(steps, key=lambda step: step.event is None)
        events = [step.event for step in ordered if step.event is not None]
        published = len(events)
        failure: Exception | None = None
        try:
            self.publish(events)
        except PublishFailed as exc:  # the broker went away part way
            published, failure = exc.published, exc
        except Exception as exc:
            published, failure = 0, exc
        settled = ordered if failure is None else ordered[:published]
        tally = outcomes.tally
        for event in events[:published]:
            name = f"events:{event['status']}"
            tally.counters[name] = tally.counters.get(name, 0) + 1
        if outcomes.count_published_as and published:
            tally.counters[outcomes.count_published_as] = published
        summaries = {
            step.observed.ref_id: event_summary(step.event) for step in settled if step.event
        }
        self.backlog.settle(
            outcomes.oa_id,
            outcomes.token,
            now_s,
            [step.observed.ref_id for step in settled if step.outcome.terminal],
            [
                Requeue(
                    step.observed.ref_id,
                    step.due_s,
                    step.outcome.state_key,
                    summaries.get(step.observed.ref_id, ""),
                )
                for step in settled
                if not step.outcome.terminal
            ],
            tally,
            summaries,
            asked=outcomes.asked,
        )
        back: defaultdict[float, list[str]] = defaultdict(list)
        for step in ordered[len(settled) :]:
            back[step.hand_back_s].append(step.observed.ref_id)
        for due_s, ref_ids in back.items():
            self.backlog.unlease(outcomes.oa_id, outcomes.token, ref_ids, due_s)
        return Settled(events[:published], [step.observed for step in settled], failure)
