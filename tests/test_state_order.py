"""A RefId's state only moves forward, whichever path (poll or push) observes it.

Deduplicating by event_id is safe only if a state never comes back after a later one: these
tests drive real answers (the simulator over HTTP) and real pushes (the inbox on real Redis).
"""

from __future__ import annotations

from typing import Any

import pytest

from esms_callbacks.esms.records import (
    Outcome,
    outcome_of,
    progressed,
    state_rank,
)
from esms_callbacks.push.apply import PushApplier
from esms_callbacks.push.inbox import PushInbox
from esms_callbacks.push.parse import parse_push
from tests.test_push_apply import OA, pushed, record


def states(events: list[dict[str, Any]], ref_id: str) -> list[tuple[str, Any]]:
    return [(e["status"], e["send_status"]) for e in events if e["ref_id"] == ref_id]


def test_a_refid_missing_from_one_answer_after_it_was_found_stays_where_it_was(drain_env, sim):
    # given answers pending(7), then nothing for the RefId, then pending(7), then sent
    drainer, runtime, clock, events = drain_env(repoll_after_s=60, max_age_s=86400)
    sim.script("back-1", ["pending7", "missing", "pending7", "sent"])
    runtime.backlog.park("oa1", ["back-1"], clock.now_s())

    # when it is asked four times
    for _ in range(4):
        drainer.drain(budget_s=5)
        clock.advance(61)

    # expect pending once, never not_found, then sent: every event_id new
    assert states(events, "back-1") == [("pending", 7), ("sent", 5)]
    ids = [e["event_id"] for e in events if e["ref_id"] == "back-1"]
    assert len(ids) == len(set(ids))
    assert sim.asked("back-1") == 4


def test_an_answer_that_moves_a_state_back_gives_no_event(drain_env, sim):
    # given answers 7 (sent, awaiting the report), then 1 (awaiting approval), then 2, then 7
    drainer, runtime, clock, events = drain_env(repoll_after_s=60, max_age_s=86400)
    sim.script("back-2", ["pending7", "pending1", "pending2", "pending7", "sent"])
    runtime.backlog.park("oa1", ["back-2"], clock.now_s())

    # when asked five times
    for _ in range(5):
        drainer.drain(budget_s=5)
        clock.advance(61)

    # expect 7 then sent: 1 and 2 after 7 are stale, and 7 again is the same state
    assert states(events, "back-2") == [("pending", 7), ("sent", 5)]


def test_states_move_forward_from_awaiting_approval_to_the_delivery_report(drain_env, sim):
    # given answers 1, 2, 7, sent
    drainer, runtime, clock, events = drain_env(repoll_after_s=60, max_age_s=86400)
    sim.script("fwd-1", ["pending1", "pending2", "pending7", "sent"])
    runtime.backlog.park("oa1", ["fwd-1"], clock.now_s())

    # when asked four times
    for _ in range(4):
        drainer.drain(budget_s=5)
        clock.advance(61)

    # expect an event for each step forward
    assert states(events, "fwd-1") == [("pending", 1), ("pending", 2), ("pending", 7), ("sent", 5)]


def test_a_late_push_of_awaiting_approval_after_a_polled_7_gives_no_event(drain_env, sim):
    # given a RefId polled as 7 (sent to Zalo, awaiting the report)
    drainer, runtime, clock, events = drain_env(repoll_after_s=60, max_age_s=86400)
    sim.script("late-1", ["pending7", "sent"])
    runtime.backlog.park(OA, ["late-1"], clock.now_s())
    drainer.drain(budget_s=5)
    assert states(events, "late-1") == [("pending", 7)]

    # when eSMS's retried push of SendStatus 1 arrives late and is applied
    inbox = PushInbox(runtime.redis, runtime.keys)
    inbox.ensure_group()
    applier = PushApplier(
        runtime.settings, runtime.account, runtime.backlog, inbox, events.extend, clock
    )
    record(runtime.settings, runtime, pushed("late-1", send_status=1))
    applier.apply(inbox.read("test-order", 10, 100))

    # expect no event from the push, and the next poll's final state as the only other event
    assert states(events, "late-1") == [("pending", 7)]
    clock.advance(61)
    drainer.drain(budget_s=5)
    assert states(events, "late-1") == [("pending", 7), ("sent", 5)]


@pytest.mark.parametrize(
    ("previous", "seen", "moves"),
    [
        ("", "not_found:", True),
        ("not_found:", "pending:1", True),
        ("pending:1", "pending:2", True),
        ("pending:2", "pending:7", True),
        ("pending:7", "sent:5", True),
        ("pending:7", "not_found:", False),
        ("pending:7", "pending:1", False),
        ("pending:2", "pending:1", False),
        ("pending:1", "not_found:", False),
        ("pending:3", "pending:6", False),  # two unknown codes: the same rank, no move
        ("pending:2", "pending:3", True),
        ("pending:3", "pending:7", True),
    ],
)
def test_the_rank_of_states(previous, seen, moves):
    # given a state and a later observation, expect it moves forward only
    status, _, number = seen.partition(":")
    outcome = Outcome(status, int(number) if number else None, None, None)
    assert (progressed(previous, outcome).state_key == seen) is moves
    assert (state_rank(seen) > state_rank(previous)) is moves


def test_a_recorded_terminal_state_stands_against_any_later_observation():
    # given an expiry recorded before a crash, when eSMS later answers sent, expect expired
    sent = outcome_of({"SMSID": "x", "SendStatus": 5, "SendFailed": 0, "SendSuccess": 1})
    assert progressed("expired:", sent).state_key == "expired:"
    assert progressed("sent:5", sent) is sent


def test_a_push_of_awaiting_approval_parses_as_pending_1():
    # a sanity check of the push used above: SendStatus 1 is pending(1)
    push = parse_push(pushed("p", send_status=1).items())
    assert outcome_of(push.record).state_key == "pending:1"
