"""Real published events against the shipped JSON Schema and the typed model.

Given events from the real drainer (the simulator over HTTP: every status it can give) and from
the push applier, expect each to satisfy the schema and to read back as a StatusEvent.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from esms_callbacks.errors import UnsupportedEvent
from esms_callbacks.events.model import StatusEvent, event_schema
from esms_callbacks.push.apply import PushApplier
from esms_callbacks.push.inbox import InboxEntry, PushInbox
from esms_callbacks.push.parse import parse_push

OA = "oa-schema"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = event_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def published_events(drain_env: Any, sim: Any) -> list[dict[str, Any]]:
    # (GetCallback alone: what QueryZnsStatus adds is tests/test_status_sources_flow.py's)
    drainer, runtime, clock, events = drain_env(
        max_age_s=3600, repoll_after_s=600, query_status="off"
    )
    scripts = {
        "sent": ["sent"],
        "failed": ["failed"],
        "rejected": ["rejected"],
        "pending": ["pending7"],
        "missing": ["missing"],
    }
    for ref_id, script in scripts.items():
        sim.script(ref_id, script)
    runtime.backlog.park(OA, list(scripts), clock.now_s())
    drainer.drain(budget_s=5)
    clock.advance(3601)  # the pending and missing ones expire at their last ask
    drainer.drain(budget_s=5)
    push = parse_push(
        {
            "SMSID": "pushed",
            "SendStatus": "5",
            "SendFailed": "1",
            "oaid": OA,
            "error_info": '"{\\"error\\":-114,\\"message\\":\\"inactive\\"}"',
            "phonenumber": "0901888484",
            "telcoid": "2",
        }.items()
    )
    applier = PushApplier(
        drainer.settings,
        drainer.account,
        runtime.backlog,
        PushInbox(runtime.redis, runtime.keys),
        events.extend,
        clock,
    )
    applier.apply([InboxEntry("1-1", push, time.time())])
    published: list[dict[str, Any]] = events
    return published


def test_every_published_event_satisfies_the_schema_and_reads_as_a_status_event(
    drain_env, sim, validator
):
    events = published_events(drain_env, sim)
    statuses = {(e["status"], e["source"]) for e in events}
    assert statuses >= {
        ("sent", "poll"),
        ("failed", "poll"),
        ("pending", "poll"),
        ("not_found", "poll"),
        ("expired", "poll"),
        ("failed", "push"),
    }
    for payload in events:
        errors = [e.message for e in validator.iter_errors(payload)]
        assert errors == [], (payload["status"], errors)
        event = StatusEvent.from_payload(payload)
        assert (event.ref_id, event.status, event.terminal) == (
            payload["ref_id"],
            payload["status"],
            payload["terminal"],
        )
        assert event.observed_at.tzinfo is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 3}, "event version 3; this code reads versions 1 and 2"),
        ({"version": None}, "event version None"),
        ({"status": "lost"}, "unknown status 'lost'"),
        ({"observed_at": "yesterday"}, "not a version-1 status event"),
    ],
)
def test_an_event_of_another_version_or_shape_is_refused_not_misread(
    drain_env, sim, validator, change, message
):
    sim.script("one", ["sent"])
    drainer, runtime, clock, events = drain_env()
    runtime.backlog.park(OA, ["one"], clock.now_s())
    drainer.drain(budget_s=5)
    payload = {**events[0], **change}
    with pytest.raises(UnsupportedEvent, match=message):
        StatusEvent.from_payload(payload)
    assert list(validator.iter_errors(payload))  # the schema refuses it too


def test_keys_added_later_within_version_1_are_ignored(drain_env, sim):
    sim.script("two", ["sent"])
    drainer, runtime, clock, events = drain_env()
    runtime.backlog.park(OA, ["two"], clock.now_s())
    drainer.drain(budget_s=5)
    assert StatusEvent.from_payload({**events[0], "new_key": 1}).status == "sent"


def test_the_model_the_schema_and_the_records_name_the_same_statuses():
    # one list of statuses (records.STATUSES): the typed model and the shipped schema agree
    from typing import get_args

    from esms_callbacks.esms.records import STATUSES
    from esms_callbacks.events.model import Status, event_schema

    assert set(get_args(Status)) == set(STATUSES)
    assert event_schema(2)["properties"]["status"]["enum"] == list(STATUSES)
    # version 1 (delivery not tracked) has every status but `delivered`
    assert event_schema(1)["properties"]["status"]["enum"] == [
        status for status in STATUSES if status != "delivered"
    ]
