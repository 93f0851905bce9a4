"""`manage.py esms_consume`: real events, published by the project's publisher to the test
Redis broker, into MessageStatus; acked only after the commit; SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db.models.signals import pre_save
from kombu import Connection

from esms_callbacks.contrib.django.models import MessageStatus
from esms_callbacks.events.publish import EventPublisher, queue_depth
from tests.contrib_django.events import payload

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue(redis_url):
    """A status queue of the test's own, and a publisher to it (exchange named like it)."""
    name = f"esms.status.django-{uuid.uuid4().hex[:8]}"
    publisher = EventPublisher(Connection(redis_url), name)
    return name, publisher


def waiting(redis_url: str, name: str) -> int:
    with Connection(redis_url) as conn:
        depth: int = queue_depth(conn, name)[0]
        return depth


def consume(name: str, alias: str, max_events: int, broker_url: str) -> None:
    call_command("esms_consume", queue=name, exchange=name, database=alias, max_events=max_events)


def test_the_command_applies_published_events(alias, signals, queue, redis_url, settings_broker):
    name, publisher = queue
    # given events as the workers publish them: out of order, one twice
    publisher.publish([payload("c1", "sent"), payload("c1", "pending7"), payload("c2", "pending1")])
    publisher.publish([payload("c1", "sent")])
    # when the command takes them
    consume(name, alias, 4, redis_url)
    # expect the furthest state of each, one signal per new state, nothing left on the queue
    rows = {r.ref_id: r.status for r in MessageStatus.objects.using(alias).all()}
    assert rows == {"c1": "sent", "c2": "pending"}
    assert [(s["event"].ref_id, s["event"].status) for s in signals] == [
        ("c1", "sent"),
        ("c2", "pending"),
    ]
    assert waiting(redis_url, name) == 0


def test_an_event_is_acked_only_after_its_commit(alias, signals, queue, redis_url, settings_broker):
    name, publisher = queue
    publisher.publish([payload("c3", "sent")])

    # given the database failing inside the transaction (a crash before the commit)
    def crash(sender, instance, **kwargs):
        raise RuntimeError("database gone")

    pre_save.connect(crash, sender=MessageStatus, dispatch_uid="crash")
    try:
        with pytest.raises(RuntimeError, match="database gone"):
            consume(name, alias, 1, redis_url)
    finally:
        pre_save.disconnect(sender=MessageStatus, dispatch_uid="crash")
    # expect nothing stored or signalled, and the event back on the queue
    assert not MessageStatus.objects.using(alias).exists()
    assert signals == []
    assert waiting(redis_url, name) == 1
    # when the command runs again, it is applied, once
    consume(name, alias, 1, redis_url)
    assert MessageStatus.objects.using(alias).get(ref_id="c3").status == "sent"
    assert len(signals) == 1
    assert waiting(redis_url, name) == 0


@pytest.fixture
def settings_broker(redis_url):
    from django.test import override_settings

    with override_settings(CELERY_BROKER_URL=redis_url):
        yield


@pytest.mark.slow
def test_sigterm_stops_it_after_the_event_in_hand(alias, queue, redis_url):
    name, publisher = queue
    env = {
        **os.environ,
        "CELERY_BROKER_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "tests.django_settings",
    }
    command = [sys.executable, "-m", "django", "esms_consume", "--queue", name, "--exchange", name]
    proc = subprocess.Popen(
        [*command, "--database", alias],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "reading" in proc.stdout.readline()
        publisher.publish([payload("c4", "pending7"), payload("c4", "sent")])
        deadline = time.monotonic() + 20
        rows = MessageStatus.objects.using(alias)
        while not rows.filter(ref_id="c4", status="sent").exists():
            assert time.monotonic() < deadline, "the command applied nothing"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped after 2 events" in out
    assert waiting(redis_url, name) == 0
