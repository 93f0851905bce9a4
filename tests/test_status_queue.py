"""The default status queue: on by default, off for consumers that read queues of their own.

Real Redis (the test broker) and the local RabbitMQ; events published by the project's own
publisher and read back with plain kombu.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection, Exchange, Queue

from esms_callbacks.errors import PublishFailed
from esms_callbacks.events.publish import EventPublisher, queue_depth
from tests.helpers import account_for, drain_events, runtime_of
from tests.test_events import NO_RETRY, RABBIT_URL, make_events
from tests.test_events import rabbit_queue as rabbit_queue


@pytest.fixture
def names(redis_client: redis.Redis) -> Iterator[tuple[str, str]]:
    """A status queue name and its exchange's own consumer queue; their keys removed after."""
    base = f"esms.status.test-sq-{uuid.uuid4().hex[:10]}"
    yield base, f"{base}.crm"
    for key in redis_client.scan_iter(match=f"*{base}*"):
        redis_client.delete(key)


def own_queue(exchange: str, name: str) -> Queue:
    return Queue(name, Exchange(exchange, type="direct", durable=True), routing_key=exchange)


def test_with_the_default_queue_off_only_the_consumers_own_queues_fill(redis_url, names):
    # given the default queue off, and a consumer that bound a queue of its own
    default, crm = names
    with Connection(redis_url) as conn:
        own_queue(default, crm).bind(conn.default_channel).declare()
    publisher = EventPublisher(Connection(redis_url), default, declare_queue=False)

    # when events are published
    events = make_events(5)
    publisher.publish(events)

    # expect them in the consumer's queue, and nothing piling up in the default one
    assert drain_events(redis_url, crm, want=5, timeout_s=5) == events
    assert queue_depth(Connection(redis_url), default) == (0, None)


def test_with_the_default_queue_off_and_no_queue_bound_a_publish_fails_never_drops(
    redis_url, names
):
    # given the default queue off and nobody bound
    default, _ = names
    publisher = EventPublisher(Connection(redis_url), default, declare_queue=False)

    # when events are published, expect an error that says why (the RefIds then wait)
    with pytest.raises(PublishFailed) as caught:
        publisher.publish(make_events(3))
    assert caught.value.published == 0
    assert "no queue is bound" in str(caught.value)
    assert "ESMS_STATUS_DEFAULT_QUEUE=off" in str(caught.value)


def test_the_default_queue_depth_is_read_from_the_broker(redis_url, names):
    # given 7 events in the default queue (on, as by default)
    default, _ = names
    EventPublisher(Connection(redis_url), default).publish(make_events(7))
    # expect its depth read as 7 (Redis cannot tell consumers)
    assert queue_depth(Connection(redis_url), default) == (7, None)
    assert queue_depth(Connection(redis_url), default + ".never-declared") == (0, None)


def test_rabbitmq_with_the_default_queue_off_and_no_queue_bound_fails(rabbit_queue):
    # given RabbitMQ, the default queue off and nobody bound
    publisher = EventPublisher(Connection(RABBIT_URL), rabbit_queue, NO_RETRY, declare_queue=False)
    # when events are published, expect an error, not a silent drop
    with pytest.raises(PublishFailed) as caught:
        publisher.publish(make_events(2))
    assert caught.value.published == 0

    # and once a consumer binds its queue, the same publisher goes on
    crm = rabbit_queue + ".late"
    with Connection(RABBIT_URL) as conn:
        bound = own_queue(rabbit_queue, crm).bind(conn.default_channel)
        bound.declare()
        try:
            events = make_events(2)
            publisher.publish(events)
            assert drain_events(RABBIT_URL, crm, want=2, timeout_s=5) == events
        finally:
            bound.delete()


def test_rabbitmq_with_the_default_queue_off_feeds_the_consumers_queue(rabbit_queue):
    # given RabbitMQ, the default queue off, and a consumer's own queue bound
    crm = rabbit_queue + ".crm"
    with Connection(RABBIT_URL) as conn:
        bound = own_queue(rabbit_queue, crm).bind(conn.default_channel)
        bound.declare()
        try:
            # when events are published
            events = make_events(3)
            EventPublisher(
                Connection(RABBIT_URL), rabbit_queue, NO_RETRY, declare_queue=False
            ).publish(events)
            # expect them in the consumer's queue, and the depth read with its consumers
            assert queue_depth(Connection(RABBIT_URL), crm) == (3, 0)
            assert drain_events(RABBIT_URL, crm, want=3, timeout_s=5) == events
        finally:
            bound.delete()


def test_status_warns_when_the_default_queue_grows_with_nobody_reading_it(make_settings):
    # given a default queue past the warning level, sampled a minute ago with fewer events
    from esms_callbacks.cli.status_text import render
    from esms_callbacks.ops.status import account_state

    settings = make_settings(status_queue_warn_events=5)
    runtime = runtime_of(settings)
    publisher = EventPublisher(Connection(settings.broker_url), settings.status_queue)
    publisher.publish(make_events(4))
    now_s = runtime.clock.now_s()
    assert account_state(runtime, now_s - 61)["status_queue"]["warning"] == ""

    # when more events arrive and nobody reads them
    publisher.publish(make_events(4))
    state = account_state(runtime, now_s)

    # expect its depth, that it grows, and a warning that says what to do, in words too
    queue = state["status_queue"]
    assert (queue["events"], queue["growing"]) == (8, True)
    assert "ESMS_STATUS_DEFAULT_QUEUE=off" in queue["warning"]
    assert "WARNING" in render(state) and "8 waiting in" in render(state)


def test_the_status_queue_depth_is_a_metric(make_settings):
    # given 3 events waiting in the default queue
    from prometheus_client import CollectorRegistry, generate_latest

    from esms_callbacks.ops.metrics import AccountCollector
    from esms_callbacks.ops.status import account_state

    settings = make_settings()
    runtime = runtime_of(settings)
    EventPublisher(Connection(settings.broker_url), settings.status_queue).publish(make_events(3))

    # when scraped
    registry = CollectorRegistry()
    registry.register(AccountCollector(lambda: [account_state(runtime, runtime.clock.now_s())]))
    text = generate_latest(registry).decode()

    # expect the gauge with the queue's name
    labels = f'account="{account_for(settings).key_id}",queue="{settings.status_queue}"'
    line = f"esms_status_queue_events{{{labels}}} 3.0"
    assert line in text
