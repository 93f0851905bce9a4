"""The settle step, the one owner of record -> build event -> publish -> settle: any source
that holds RefIds only hands it outcomes. Real Redis; a manual clock.
"""

from __future__ import annotations

from typing import Any

from esms_callbacks.engine.clock import ManualClock
from esms_callbacks.engine.settle_step import Observed, Outcomes, SettleStep
from esms_callbacks.esms.records import NOT_FOUND_OUTCOME, Outcome, outcome_of
from esms_callbacks.events.publish import event_id
from esms_callbacks.runtime import Runtime
from tests.helpers import T0, runtime_of, whereabouts

OA = "oa-step"
SENT = outcome_of({"SMSID": "x", "SendStatus": 5, "SendFailed": 0})
PENDING = outcome_of({"SMSID": "x", "SendStatus": 7})


def leased(runtime: Runtime, clock: ManualClock, refs: list[str], token: str) -> dict[str, Any]:
    runtime.backlog.park(OA, refs, clock.now_s())
    picked = runtime.backlog.lease_next(clock.now_s(), 100, 60, token)
    assert picked is not None
    return {item.ref_id: item for item in picked[1]}


def observed(item: Any, seen: Outcome, at_s: float) -> Observed:
    return Observed(item.ref_id, seen, at_s, item.state_key, item.submitted_s)


def test_a_new_source_only_produces_outcomes(make_settings):
    # given RefIds a new kind of source holds (leased as a request does)
    runtime = runtime_of(make_settings(repoll_after_s=900))
    clock, events = ManualClock(T0), list[dict[str, Any]]()
    items = leased(runtime, clock, ["q-sent", "q-pending", "q-unknown"], "query-token")
    step = SettleStep(runtime.settings, runtime.account, runtime.backlog, events.extend)

    # when it hands the step what it saw of each
    seen = {"q-sent": SENT, "q-pending": PENDING, "q-unknown": NOT_FOUND_OUTCOME}
    clock.advance(3)
    settled = step(
        Outcomes(
            "query",
            OA,
            "query-token",
            [observed(items[ref], outcome, T0 + 1) for ref, outcome in seen.items()],
            asked=True,
        ),
        clock.now_s(),
    )

    # expect one event per changed state, marked with the source and when it was observed,
    # the terminal one remembered as done and the others asked again after the repoll delay
    assert settled.failure is None
    assert {(e["ref_id"], e["status"], e["source"]) for e in events} == {
        ("q-sent", "sent", "query"),
        ("q-pending", "pending", "query"),
        ("q-unknown", "not_found", "query"),
    }
    assert {e["observed_at"] for e in events} == {"2027-01-15T08:00:01+00:00"}
    assert [e["event_id"] for e in events if e["ref_id"] == "q-sent"] == [
        event_id("q-sent", OA, "sent:5", runtime.name)
    ]
    assert whereabouts(runtime.backlog, OA, "q-sent").where == "done"
    pending = whereabouts(runtime.backlog, OA, "q-pending")
    assert (pending.where, pending.due_s, pending.asks) == ("waiting", T0 + 3 + 900, 1)
    runtime.close()


def test_only_the_holder_publishes_and_settles(make_settings):
    # given a source whose lease ran out and went to another holder
    runtime = runtime_of(make_settings())
    clock, events = ManualClock(T0), list[dict[str, Any]]()
    items = leased(runtime, clock, ["stale"], "old-token")
    clock.advance(61)
    assert runtime.backlog.lease_next(clock.now_s(), 100, 60, "new-token") is not None

    # when the old holder hands the step a terminal outcome
    step = SettleStep(runtime.settings, runtime.account, runtime.backlog, events.extend)
    settled = step(
        Outcomes("poll", OA, "old-token", [observed(items["stale"], SENT, clock.now_s())]),
        clock.now_s(),
    )

    # expect no event, nothing settled, the new holder's lease left as it was
    assert (events, settled.settled) == ([], [])
    assert whereabouts(runtime.backlog, OA, "stale").where == "leased"
    runtime.close()


def test_a_terminal_state_is_recorded_before_its_event_goes_out(make_settings):
    # given a held RefId, and a broker that fails the publish
    runtime = runtime_of(make_settings())
    clock = ManualClock(T0)
    items = leased(runtime, clock, ["t"], "tok")
    recorded: list[str] = []

    def publish(events: list[dict[str, Any]]) -> None:
        recorded.append(whereabouts(runtime.backlog, OA, "t").state_key)
        raise ConnectionError("broker away")

    # when the step publishes its terminal outcome
    settled = SettleStep(runtime.settings, runtime.account, runtime.backlog, publish)(
        Outcomes("poll", OA, "tok", [observed(items["t"], SENT, clock.now_s())]), clock.now_s()
    )

    # expect the state recorded when the publish ran, and the RefId handed back to wait
    assert recorded == ["sent:5"]
    assert isinstance(settled.failure, ConnectionError)
    assert whereabouts(runtime.backlog, OA, "t").where == "waiting"
    runtime.close()
