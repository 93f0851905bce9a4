"""consume_events: a function called once per new, further state, with a real Redis store
and real events on the test broker; acked after it returns, not when it raises."""

from __future__ import annotations

import uuid

import pytest
from kombu import Connection

from esms_callbacks.events.handler import consume_events
from esms_callbacks.events.model import StatusEvent
from esms_callbacks.events.publish import EventPublisher, queue_depth
from esms_callbacks.events.stores import MemoryEventStore, RedisEventStore
from tests.contrib_django.events import payload


@pytest.fixture
def queue(redis_url):
    name = f"esms.status.handler-{uuid.uuid4().hex[:8]}"
    return name, EventPublisher(Connection(redis_url), name)


@pytest.fixture(params=["redis", "memory"])
def store(request, redis_client):
    if request.param == "memory":
        return MemoryEventStore()
    return RedisEventStore(redis_client, prefix=f"test:{uuid.uuid4().hex[:8]}", ttl_s=60)


def test_duplicates_and_steps_back_are_not_handled(queue, store, redis_url):
    name, publisher = queue
    # given events out of order, one twice (as after a crash)
    publisher.publish(
        [
            payload("h1", "sent"),
            payload("h1", "pending7"),
            payload("h2", "pending1"),
            payload("h1", "sent"),
            payload("h2", "failed"),
            payload("h2", "pending7"),
        ]
    )
    handled: list[StatusEvent] = []
    # when the helper takes them
    taken = consume_events(handled.append, store, broker_url=redis_url, queue=name, max_events=6)
    # expect each new, further state once, typed; everything acked
    assert taken == 6
    assert [(e.ref_id, e.status) for e in handled] == [
        ("h1", "sent"),
        ("h2", "pending"),
        ("h2", "failed"),
    ]
    with Connection(redis_url) as conn:
        assert queue_depth(conn, name)[0] == 0


def test_an_event_whose_handler_raises_is_not_acked(queue, store, redis_url):
    name, publisher = queue
    publisher.publish([payload("h3", "sent")])

    def fail(event):
        raise RuntimeError("handler down")

    with pytest.raises(RuntimeError, match="handler down"):
        consume_events(fail, store, broker_url=redis_url, queue=name, max_events=1)
    with Connection(redis_url) as conn:
        assert queue_depth(conn, name)[0] == 1
    # then a handler that works gets it, as new
    handled: list[StatusEvent] = []
    consume_events(handled.append, store, broker_url=redis_url, queue=name, max_events=1)
    assert [(e.ref_id, e.status) for e in handled] == [("h3", "sent")]


def test_the_redis_store_is_shared_and_expires(redis_client):
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    one = RedisEventStore(redis_client, prefix=prefix, ttl_s=60)
    other = RedisEventStore(redis_client, prefix=prefix, ttl_s=60)
    sent = StatusEvent.from_payload(payload("h4", "sent"))
    pending = StatusEvent.from_payload(payload("h4", "pending7"))
    assert one.is_new(pending)
    one.remember(sent)
    other.remember(pending)  # a late one from another consumer does not step it back
    assert not other.is_new(sent)
    assert not other.is_new(pending)
    key = one.key("default", "h4")
    assert redis_client.hget(key, "event_id").decode() == sent.event_id
    assert 0 < redis_client.ttl(key) <= 60
