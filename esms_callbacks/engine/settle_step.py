"""The step a request's answer and an applied push share: publish the events of the RefIds
held, settle what went out, hand the rest back.

Steps with an event go first: if publishing stops part way, the prefix whose events went out
is settled (terminal ones remembered as done, the others due again) and the rest is handed
back to wait, so a crash or a broker outage re-asks, never loses, and no RefId is settled with
an event the broker did not take. Terminal states are recorded before this (renew or decide),
so that whoever holds a RefId next publishes the same state again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from esms_callbacks.engine.backlog import Backlog, Requeue, Tally
from esms_callbacks.errors import PublishFailed
from esms_callbacks.esms.records import Outcome
from esms_callbacks.events.publish import event_summary

Publish = Callable[[list[dict[str, Any]]], None]


@dataclass(frozen=True)
class Step:
    ref_id: str
    outcome: Outcome
    event: dict[str, Any] | None  # None: nothing new to publish
    due_s: float  # when it is asked again, if not terminal
    hand_back_s: float  # when it is due again, if its event did not go out


@dataclass(frozen=True)
class Settled:
    published: list[dict[str, Any]]  # the events that went out
    steps: list[Step]  # the steps settled
    failure: Exception | None  # why publishing stopped, if it did


def publish_and_settle(
    backlog: Backlog,
    publish: Publish,
    oa_id: str,
    token: str,
    now_s: float,
    steps: Sequence[Step],
    tally: Tally,
    asked: bool = False,
    count_published_as: str = "",
) -> Settled:
    """Publish, settle what went out (with `tally`, plus a count of the events by status and,
    as `count_published_as`, of all of them, in the same round trip), hand back the rest;
    `asked`: eSMS was just asked for them."""
    ordered = sorted(steps, key=lambda step: step.event is None)
    events = [step.event for step in ordered if step.event is not None]
    published = len(events)
    failure: Exception | None = None
    try:
        publish(events)
    except PublishFailed as exc:  # the broker went away part way
        published, failure = exc.published, exc
    except Exception as exc:
        published, failure = 0, exc
    settled = ordered if failure is None else ordered[:published]
    for event in events[:published]:
        name = f"events:{event['status']}"
        tally.counters[name] = tally.counters.get(name, 0) + 1
    if count_published_as and published:
        tally.counters[count_published_as] = published
    summaries = {step.ref_id: event_summary(step.event) for step in settled if step.event}
    backlog.settle(
        oa_id,
        token,
        now_s,
        [step.ref_id for step in settled if step.outcome.terminal],
        [
            Requeue(step.ref_id, step.due_s, step.outcome.state_key, summaries.get(step.ref_id, ""))
            for step in settled
            if not step.outcome.terminal
        ],
        tally,
        summaries,
        asked=asked,
    )
    back: defaultdict[float, list[str]] = defaultdict(list)
    for step in ordered[len(settled) :]:
        back[step.hand_back_s].append(step.ref_id)
    for due_s, ref_ids in back.items():
        backlog.unlease(oa_id, token, ref_ids, due_s)
    return Settled(events[:published], settled, failure)
