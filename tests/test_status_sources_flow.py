"""Every status source through the drainer: GetCallback, QueryZnsStatus (fallback and only),
GetZaloMessageStatus (delivery tracking), against real Redis and the simulator over HTTP."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from esms_callbacks.engine.notes import Note
from esms_callbacks.events.model import StatusEvent, event_schema
from esms_callbacks.events.publish import event_id
from tests.helpers import whereabouts

OA = "oa-sources"


def endpoints(sim: Any) -> list[str]:
    return [request.endpoint for request in sim.requests]


def terminal(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ends = [event for event in events if event["terminal"]]
    assert len(ends) == len({event["ref_id"] for event in ends}), "two terminal events"
    return {event["ref_id"]: event for event in ends}


def test_a_message_sent_without_callback_url_ends_in_the_state_query_zns_status_gives(
    drain_env, sim
):
    # given messages eSMS sent, one with a CallbackUrl and two without (fallback, the default)
    drainer, runtime, clock, events = drain_env()
    sim.register_messages({"ref_ids": ["with-url"], "oa_id": OA})
    sim.register_messages({"ref_ids": ["no-url"], "oa_id": OA, "callback_url": False})
    sim.register_messages(
        {"ref_ids": ["no-url-off"], "oa_id": OA, "callback_url": False, "final": "failed_offline"}
    )
    runtime.backlog.park(OA, ["with-url", "no-url", "no-url-off"], clock.now_s())

    # when drained
    drainer.drain(budget_s=5)

    # expect each ends in the state eSMS knows: GetCallback's for the first, QueryZnsStatus's
    # for those GetCallback left out (the user not online in time: failed, code 1001)
    ends = terminal(events)
    assert {ref: (e["status"], e["source"]) for ref, e in ends.items()} == {
        "with-url": ("sent", "poll"),
        "no-url": ("sent", "query"),
        "no-url-off": ("failed", "query"),
    }
    assert ends["no-url-off"]["error"]["code"] == 1001
    assert ends["no-url"]["event_id"] == event_id("no-url", OA, "sent:5")  # as any source's
    assert Counter(endpoints(sim)) == {"callback": 1, "query": 2}


def test_after_get_callback_left_a_refid_out_it_is_asked_with_query_zns_status_only(drain_env, sim):
    # given a message without CallbackUrl, still pending at eSMS
    drainer, runtime, clock, events = drain_env(repoll_after_s=10)
    sim.register_messages(
        {"ref_ids": ["slow"], "oa_id": OA, "callback_url": False, "final_after_s": 3600}
    )
    runtime.backlog.park(OA, ["slow"], clock.now_s())
    drainer.drain(budget_s=5)
    assert [(e["status"], e["source"]) for e in events] == [("pending", "query")]
    assert runtime.notes.read(OA, ["slow"])["slow"].by_query

    # when it is asked again
    asked_before = len(sim.requests)
    clock.advance(11)
    drainer.drain(budget_s=5)

    # expect QueryZnsStatus alone was asked (GetCallback does not know it), no new event
    assert endpoints(sim)[asked_before:] == ["query"]
    assert len(events) == 1


def test_only_asks_query_zns_status_and_never_get_callback(drain_env, sim):
    drainer, runtime, clock, events = drain_env(query_status="only")
    refs = [f"only-{n}" for n in range(5)]
    sim.register_messages({"ref_ids": refs, "oa_id": OA, "callback_url": False})
    runtime.backlog.park(OA, refs, clock.now_s())
    drainer.drain(budget_s=5)
    assert {e["status"] for e in terminal(events).values()} == {"sent"}
    assert set(terminal(events)) == set(refs)
    assert set(endpoints(sim)) == {"query"}


def test_the_sms_type_is_found_when_not_given_and_remembered(drain_env, sim):
    # given a Zalo priority message (24) sent without CallbackUrl, its type not given
    drainer, runtime, clock, events = drain_env(repoll_after_s=10)
    sim.register_messages(
        {
            "ref_ids": ["prio"],
            "oa_id": OA,
            "callback_url": False,
            "type_id": 24,
            "final_after_s": 3600,
        }
    )
    runtime.backlog.park(OA, ["prio"], clock.now_s())
    # when drained twice
    drainer.drain(budget_s=5)
    queried = [r.sms_id for r in sim.requests if r.endpoint == "query"]
    clock.advance(11)
    drainer.drain(budget_s=5)
    # expect normal (25) tried first, then priority (24), which eSMS knows: noted, and the
    # next ask goes straight to it
    assert queried == ["prio", "prio"]
    assert runtime.notes.read(OA, ["prio"])["prio"].sms_type == 24
    assert [r.endpoint for r in sim.requests][-1] == "query"
    assert len([r for r in sim.requests if r.endpoint == "query"]) == 3
    assert [e["status"] for e in events] == ["pending"]


def test_a_given_sms_type_is_used_at_once(drain_env, sim):
    drainer, runtime, clock, events = drain_env(query_status="only")
    sim.register_messages({"ref_ids": ["typed"], "oa_id": OA, "callback_url": False, "type_id": 24})
    runtime.backlog.park(OA, ["typed"], clock.now_s())
    runtime.notes.write(OA, {"typed": Note(sms_type=24)})
    drainer.drain(budget_s=5)
    assert [e["status"] for e in events] == ["sent"]
    assert endpoints(sim) == ["query"]  # one request: no guess
    # and the note is gone with the RefId
    assert runtime.notes.read(OA, ["typed"]) == {}


def test_with_delivery_tracked_a_sent_message_ends_delivered_at_zalo_s_time(drain_env, sim):
    # given delivery tracking on and a message that reaches the phone (at once)
    drainer, runtime, clock, events = drain_env(track_delivery=True, repoll_after_s=10)
    sim.register_messages({"ref_ids": ["phone"], "oa_id": OA, "delivered_after_s": 0})
    runtime.backlog.park(OA, ["phone"], clock.now_s())

    # when drained, then drained again once it is due
    drainer.drain(budget_s=5)
    first = list(events)
    clock.advance(11)
    drainer.drain(budget_s=5)

    # expect `sent` first (version 2: not terminal), then `delivered`, terminal, with when
    assert [(e["status"], e["terminal"], e["version"]) for e in first] == [("sent", False, 2)]
    assert [(e["status"], e["terminal"], e["source"]) for e in events[1:]] == [
        ("delivered", True, "delivery")
    ]
    delivered = StatusEvent.from_payload(events[-1])
    assert delivered.delivered_at is not None
    assert delivered.delivered_at.tzinfo is not None
    assert endpoints(sim) == ["callback", "delivery"]  # its Zalo id from the record
    assert whereabouts(runtime.backlog, OA, "phone").where == "done"
    # and both satisfy the shipped schema of version 2 (and not version 1's)
    for version, valid in ((2, True), (1, False)):
        checker = Draft202012Validator(
            event_schema(version), format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        assert all(checker.is_valid(event) for event in events) is valid


def test_with_delivery_tracked_a_message_never_on_the_phone_stays_sent_then_expires(drain_env, sim):
    drainer, runtime, clock, events = drain_env(
        track_delivery=True, repoll_after_s=10, max_age_s=600
    )
    sim.register_messages({"ref_ids": ["offline"], "oa_id": OA, "callback_url": False})
    runtime.backlog.park(OA, ["offline"], clock.now_s())
    drainer.drain(budget_s=5)
    clock.advance(11)
    drainer.drain(budget_s=5)  # asked for delivery: not yet, no event
    assert [e["status"] for e in events] == ["sent"]
    clock.advance(600)
    drainer.drain(budget_s=5)
    assert [(e["status"], e["terminal"]) for e in events] == [
        ("sent", False),
        ("expired", True),
    ]
    assert "delivery" in endpoints(sim)


def test_without_delivery_tracking_events_stay_version_1(drain_env, sim):
    drainer, runtime, clock, events = drain_env()
    runtime.backlog.park(OA, ["v1"], clock.now_s())
    drainer.drain(budget_s=5)
    assert [(e["status"], e["terminal"], e["version"]) for e in events] == [("sent", True, 1)]
    assert "delivered_at" not in events[0]


def test_a_failing_query_zns_status_does_not_stop_get_callback(drain_env, sim):
    # given QueryZnsStatus unreachable (its host refuses connections)
    drainer, runtime, clock, events = drain_env(rest_base_url="http://127.0.0.1:9")
    sim.register_messages({"ref_ids": ["known"], "oa_id": OA})
    sim.register_messages({"ref_ids": ["unknown"], "oa_id": OA, "callback_url": False})
    runtime.backlog.park(OA, ["known", "unknown"], clock.now_s())

    # when drained
    drainer.drain(budget_s=5)

    # expect GetCallback's RefId settled; the other waits, counted against QueryZnsStatus's
    # breaker and stats, not GetCallback's
    assert [(e["ref_id"], e["status"]) for e in events if e["terminal"]] == [("known", "sent")]
    assert whereabouts(runtime.backlog, OA, "unknown").where == "waiting"
    assert runtime.breaker_of("query").failures_in_a_row() == 1
    assert runtime.breaker.failures_in_a_row() == 0
    stats = {k.decode(): v for k, v in runtime.redis.hgetall(runtime.keys.stats).items()}
    assert any(name.startswith("endpoint_errors:query:") for name in stats), stats


def test_refids_held_back_by_an_open_breaker_wait_for_it_not_the_next_step(drain_env, sim):
    # given QueryZnsStatus's breaker open for a minute (eSMS failed it), an account on `only`
    drainer, runtime, clock, _ = drain_env(query_status="only")
    runtime.breaker_of("query").record_failure(hold_s=60)
    open_until_s = runtime.breaker_of("query").state()["open_until_s"]
    runtime.backlog.park(OA, ["held"], clock.now_s())

    # when drained
    report = drainer.drain(budget_s=5)

    # expect nothing sent, and the RefId due once the breaker lets a probe through, so the
    # drain stops instead of leasing it again and again
    assert sim.requests == []
    assert report.stopped == "nothing due"
    assert whereabouts(runtime.backlog, OA, "held").due_s >= open_until_s - 0.01
    assert runtime.breaker.failures_in_a_row() == 0  # GetCallback's untouched


def test_an_accounts_file_table_sets_each_endpoint_s_terms():
    from esms_callbacks.settings import Settings

    terms = Settings().terms.with_table(
        {
            "query_status": "only",
            "query_rate_interval": 0.02,
            "track_delivery": True,
            "delivery_rate_interval": "0.05",
            "rest_base_url": "https://rest.example",
            "delivery_window": "01:00-05:00",
        },
        "accounts.toml [accounts.shop]",
    )
    assert (terms.query_status, terms.track_delivery) == ("only", True)
    assert terms.endpoint("query").spacing_s == pytest.approx(0.02 + 0.0006)  # margin: 3%
    assert terms.endpoint("delivery").rate_interval_s == 0.05
    assert str(terms.delivery_window).startswith("01:00:00-05:00:00")
    assert terms.drain_window.always  # `only`: QueryZnsStatus's window, always by default


def test_with_a_backlog_larger_than_the_budget_no_refid_is_asked_twice_before_another_once(
    drain_env, sim
):
    # given 360 RefIds that stay pending, three OAs, the floor between asks shorter than a
    # round of requests takes (so every RefId is due again before the round ends)
    from esms_callbacks.engine.drainer import DrainReport

    drainer, runtime, clock, _ = drain_env(repoll_after_s=0.5, query_status="off")
    refs = {f"oa-{i}": [f"oa-{i}-slow-{n}" for n in range(110 + 10 * i)] for i in range(3)}
    for oa, ref_ids in refs.items():
        for ref_id in ref_ids:
            sim.script(ref_id, ["pending7"])
        runtime.backlog.park(oa, ref_ids, clock.now_s())
    every = [ref for ref_ids in refs.values() for ref in ref_ids]

    # when requests go out one by one, the clock moving a second between them
    asks_seen = []
    for _ in range(20):
        assert drainer.step(DrainReport()) == ""
        clock.advance(1.0)
        asks = [sim.asked(ref) for ref in every]
        asks_seen.append((min(asks), max(asks)))

    # expect the asks of any two RefIds never more than one apart: the longest due first
    assert all(most - least <= 1 for least, most in asks_seen), asks_seen
    assert asks_seen[-1][0] >= 3  # every RefId asked again and again, none starved


def test_show_says_what_each_source_said_and_when(drain_env, sim):
    from esms_callbacks.ops.lookup import find_ref

    # given a message without CallbackUrl, pending at eSMS, asked once
    drainer, runtime, clock, _ = drain_env()
    sim.register_messages(
        {"ref_ids": ["asked"], "oa_id": OA, "callback_url": False, "final_after_s": 3600}
    )
    runtime.backlog.park(OA, ["asked"], clock.now_s())
    drainer.drain(budget_s=5)

    # expect `show` to name QueryZnsStatus's last word and its time, beside the last event
    (state,) = find_ref(runtime, "asked", OA)
    assert state.learnt is not None
    said = state.learnt["heard"]["QueryZnsStatus"]
    assert said["state"].startswith("pending:") and said["at"].startswith("2027-01-15")
    assert state.last_event is not None and state.last_event["source"] == "query"
