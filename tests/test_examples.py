"""The examples run: each web app queues the RefId it got, by name works, the consumer dedups."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from typing import Any

from kombu import Connection

from esms_callbacks.esms.records import outcome_of
from esms_callbacks.events.publish import EventPublisher, build_event

OA = "1090257973118325189"


def dead_broker_submit() -> Any:
    """fetch_callbacks.delay as it fails with the broker down: a real publish (the task's
    message) to a broker that does not answer, without retries."""
    from kombu import Connection

    def submit(ref_ids: list[str], oa_id: str) -> Any:
        with Connection("redis://127.0.0.1:1/0", connect_timeout=1) as conn:
            body = {"task": "esms.fetch_callbacks", "args": [ref_ids, oa_id]}
            conn.Producer().publish(body, routing_key="esms.fetch", retry=False)

    return submit


def queued_ref_ids(calls: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    return [(c["task"], c["args"]) for c in calls]


def test_django_view_keeps_the_refid_through_a_broker_outage(fetch_queue, tmp_path):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
    os.environ.setdefault("EXAMPLE_DB", str(tmp_path / "django.sqlite3"))
    import django
    from django.db import connection
    from django.test import Client, override_settings

    from esms_callbacks.tasks import fetch_callbacks
    from examples import outbox

    django.setup()
    body = json.dumps({"phone": "0909090909", "oa_id": OA, "template_id": "228386"})
    # given the broker down when the message is sent
    with override_settings(ESMS_SUBMIT=dead_broker_submit()):
        response = Client().post("/send", data=body, content_type="application/json")
    # expect the view to answer, nothing queued, the RefId kept in the app's database
    assert response.status_code == 202
    ref_id = response.json()["ref_id"]
    assert fetch_queue() == []
    assert outbox.waiting(connection) >= 1
    # and handed over by the relay once the broker is back
    assert outbox.relay(connection, fetch_callbacks.delay) >= 1
    assert ("esms.fetch_callbacks", [[ref_id], OA]) in queued_ref_ids(fetch_queue())
    assert outbox.waiting(connection) == 0
    # with the broker up the view hands it over at once; bad input costs no message
    response = Client().post("/send", data=body, content_type="application/json")
    assert queued_ref_ids(fetch_queue()) == [
        ("esms.fetch_callbacks", [[response.json()["ref_id"]], OA])
    ]
    assert Client().post("/send", data="{}", content_type="application/json").status_code == 400
    assert fetch_queue() == []


def test_flask_view_keeps_the_refid_through_a_broker_outage(fetch_queue, tmp_path):
    import sqlite3

    from esms_callbacks.tasks import fetch_callbacks
    from examples import outbox
    from examples.flask_app import app

    app.config["DATABASE"] = str(tmp_path / "flask.sqlite3")
    app.config["ESMS_SUBMIT"] = dead_broker_submit()
    response = app.test_client().post("/send", json={"phone": "0909090909", "oa_id": OA})
    assert response.status_code == 202
    assert response.get_json()["handed_to_broker"] is False
    assert fetch_queue() == []
    db = sqlite3.connect(app.config["DATABASE"])
    assert outbox.waiting(db) == 1
    assert outbox.relay(db, fetch_callbacks.delay) == 1
    ref_id = response.get_json()["ref_id"]
    assert queued_ref_ids(fetch_queue()) == [("esms.fetch_callbacks", [[ref_id], OA])]
    app.config["ESMS_SUBMIT"] = fetch_callbacks.delay
    again = app.test_client().post("/send", json={"phone": "0909090909", "oa_id": OA})
    assert again.get_json()["handed_to_broker"] is True
    assert len(fetch_queue()) == 1
    assert app.test_client().post("/send", json={"phone": "1"}).status_code == 400


def test_producer_by_name_needs_no_import_of_the_project(fetch_queue, redis_url):
    from examples.producer_by_name import submit

    submit(redis_url, ["r1", "r2"], OA)
    calls = fetch_queue()
    assert [(c["task"], c["kwargs"]) for c in calls] == [
        ("esms.fetch_callbacks", {"ref_ids": ["r1", "r2"], "oa_id": OA})
    ]


def test_consumer_handles_each_event_once(make_settings):
    from examples.consumer import consume

    # given a sent event published twice (as after a crash) and a pending one
    settings = make_settings()
    now = datetime.now(UTC)
    sent = build_event("c1", OA, outcome_of({"SMSID": "c1", "SendStatus": 5, "SendFailed": 0}), now)
    pending = build_event("c2", OA, outcome_of({"SMSID": "c2", "SendStatus": 7}), now)
    publisher = EventPublisher(Connection(settings.broker_url), settings.status_queue)
    publisher.publish([sent, pending, sent])

    # when the example consumer runs until it saw them
    handled: list[str] = []
    done = threading.Event()

    def handle(event: dict[str, Any]) -> None:
        handled.append(f"{event['ref_id']}:{event['status']}")

    def stop() -> bool:
        return done.is_set()

    timer = threading.Timer(3.0, done.set)
    timer.start()
    consume(settings.broker_url, settings.status_queue, handle, stop)

    # expect each event handled once
    assert handled == ["c1:sent", "c2:pending"]


def test_the_flask_command_handles_each_new_status_once(make_settings, monkeypatch, caplog):
    from examples.flask_app import app

    # given a sent event published twice (as after a crash), then a late pending of the same
    settings = make_settings()
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ESMS_REDIS_URL", settings.redis_url)
    now = datetime.now(UTC)
    ref = f"flask-{now.timestamp():.6f}"  # the store outlives the test: a RefId of its own
    sent = build_event(ref, OA, outcome_of({"SMSID": ref, "SendStatus": 5, "SendFailed": 0}), now)
    late = build_event(ref, OA, outcome_of({"SMSID": ref, "SendStatus": 7}), now)
    EventPublisher(Connection(settings.broker_url), settings.status_queue).publish(
        [sent, sent, late]
    )

    # when `flask consume-statuses` takes them
    result = app.test_cli_runner().invoke(args=["consume-statuses", "--max-events", "3"])

    # expect the status handled once: no duplicate, no step back
    assert result.exit_code == 0, result.output
    handled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ZNS ")]
    assert handled == [f"ZNS {ref}: sent"]
