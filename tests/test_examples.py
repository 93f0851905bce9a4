"""The examples run: each web app queues the RefId it got, by name works, the consumer dedups."""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from typing import Any

from kombu import Connection

from workers.events import EventPublisher, build_event
from workers.records import outcome_of

OA = "1090257973118325189"


def test_django_view_queues_the_sent_message(fetch_queue):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
    import django
    from django.test import Client

    django.setup()
    response = Client().post(
        "/send",
        data=json.dumps({"phone": "0909090909", "oa_id": OA, "template_id": "228386"}),
        content_type="application/json",
    )
    assert response.status_code == 202
    ref_id = response.json()["ref_id"]
    assert fetch_queue() == [
        {
            "task": "esms.fetch_callbacks",
            "args": [[ref_id], OA],
            "kwargs": {},
            "argsrepr": repr(([ref_id], OA)),
        }
    ]
    # bad input is refused before anything is queued
    assert Client().post("/send", data="{}", content_type="application/json").status_code == 400
    assert fetch_queue() == []


def test_flask_view_queues_the_sent_message(fetch_queue):
    from examples.flask_app import app

    response = app.test_client().post("/send", json={"phone": "0909090909", "oa_id": OA})
    assert response.status_code == 202
    ref_id = response.get_json()["ref_id"]
    calls = fetch_queue()
    assert [(c["task"], c["args"]) for c in calls] == [("esms.fetch_callbacks", [[ref_id], OA])]
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
