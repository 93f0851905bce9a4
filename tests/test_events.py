"""EventPublisher against real brokers: on Redis one call is one MULTI/EXEC (all or nothing),
on RabbitMQ one message per event; either way a plain kombu consumer gets each event as its own
JSON message, in order."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue

from esms_callbacks.errors import PublishFailed
from esms_callbacks.esms.records import outcome_of
from esms_callbacks.events import publish as events_module
from esms_callbacks.events.publish import (
    EventPublisher,
    build_event,
    masked,
    status_queue,
)
from tests.helpers import drain_events, wait_until

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"
NO_RETRY = {"max_retries": 0, "interval_start": 0.0, "interval_step": 0.0, "interval_max": 0.0}
ONE_RETRY = {**NO_RETRY, "max_retries": 1}
LPUSH = b"\r\n$5\r\nLPUSH\r\n"  # as redis-py packs it


def make_events(n: int) -> list[dict[str, Any]]:
    return [
        {"event_id": f"{i:032x}", "ref_id": f"r{i}", "status": "sent", "terminal": True, "n": i}
        for i in range(n)
    ]


@pytest.fixture
def queue_name(redis_client: redis.Redis) -> Iterator[str]:
    """A fresh status queue name; its lists and bindings are removed afterwards."""
    name = f"esms.status.test-events-{uuid.uuid4().hex[:12]}"
    yield name
    for key in [*redis_client.scan_iter(match=f"{name}*"), f"_kombu.binding.{name}"]:
        redis_client.delete(key)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Count writes to Redis sockets: one per command, one per whole pipeline."""
    count = 0
    send: Callable[..., None] = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal count
        count += 1
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    return lambda: count


@contextmanager
def drop_before_last_command(times: int) -> Iterator[None]:
    """For the next `times` pipelines that push messages, the connection drops after every
    command but the last reached Redis (in a transaction: all but EXEC), as when the network
    fails mid-write."""
    send: Callable[..., None] = redis.connection.AbstractConnection.send_packed_command
    left = times

    def cutting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal left
        data = command.encode() if isinstance(command, str) else b"".join(command)
        last = data.rfind(b"\r\n*") + 2  # JSON payloads hold no CRLF: a command starts here
        if left and LPUSH in data and last > 2:
            left -= 1
            send(self, [data[:last]], check_health)
            self.disconnect()
            raise redis.ConnectionError("connection dropped before the last command (test)")
        send(self, command, check_health)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.connection.AbstractConnection, "send_packed_command", cutting)
        yield
    assert left == 0, "fewer pipelines pushed messages than the test meant to cut"


def bind_second_queue(redis_url: str, queue_name: str) -> Queue:
    """Declare `{queue_name}.audit`, bound to the status exchange with the same routing key,
    as a second consuming service would."""
    status = status_queue(queue_name)
    audit = Queue(f"{queue_name}.audit", status.exchange, routing_key=status.routing_key)
    with Connection(redis_url) as conn:
        audit.bind(conn.default_channel).declare()
    return audit


def consume_plainly(
    url: str, queue_name: str, count: int, then_empty: bool = False
) -> list[dict[str, Any]]:
    """Take `count` messages as a consumer without this project would (kombu's SimpleQueue),
    checking each is persistent JSON; with `then_empty`, check nothing more is queued."""
    payloads = []
    with Connection(url) as conn:
        queue = conn.SimpleQueue(queue_name)
        try:
            for _ in range(count):
                message = queue.get(timeout=5)
                assert message.content_type == "application/json"
                assert message.properties["delivery_mode"] == 2
                payloads.append(message.payload)
                message.ack()
            if then_empty:
                with pytest.raises(queue.Empty):
                    queue.get(timeout=0.2)
        finally:
            queue.close()
    return payloads


def raw_messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The kombu messages waiting on `queue`, oldest first (consumers BRPOP from the right)."""
    return [json.loads(raw) for raw in reversed(client.lrange(queue, 0, -1))]


def test_500_events_arrive_in_order_each_its_own_plain_kombu_message(
    redis_url: str, queue_name: str
) -> None:
    # given 500 events
    events = make_events(500)

    # when published in one call
    EventPublisher(Connection(redis_url), queue_name).publish(events)

    # expect a plain SimpleQueue consumer to get them one by one, in order, as JSON, persistent,
    # and nothing more
    assert consume_plainly(redis_url, queue_name, len(events), then_empty=True) == events


def test_messages_have_the_shape_producer_publish_gives(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    # given one event published by kombu's producer as the publisher did one at a time
    (event,) = make_events(1)
    queue = status_queue(queue_name)
    with Connection(redis_url) as conn:
        Producer(conn).publish(
            event,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            serializer="json",
            delivery_mode=2,
        )

    # when the publisher publishes the same event
    EventPublisher(Connection(redis_url), queue_name).publish([event])

    # expect the two stored messages to differ only in their unique delivery tag
    reference, ours = raw_messages(redis_client, queue_name)
    for message in (reference, ours):
        assert message["properties"].pop("delivery_tag")
    assert ours == reference


def test_one_call_is_a_bounded_number_of_round_trips(
    redis_url: str, queue_name: str, round_trips: Callable[[], int]
) -> None:
    # given a publisher that has connected and declared its queue
    publisher = EventPublisher(Connection(redis_url), queue_name)
    publisher.publish(make_events(1))
    before = round_trips()

    # when 500 events are published
    publisher.publish(make_events(500))

    # expect a few round trips (bindings lookup, one MULTI/EXEC, maybe a health-check PING),
    # not one or two per event
    assert round_trips() - before <= 4
    assert len(drain_events(redis_url, queue_name, want=501)) == 501


def test_every_queue_bound_to_the_exchange_gets_every_event(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    # given a second queue bound to the status exchange with the same routing key
    audit = bind_second_queue(redis_url, queue_name)
    events = make_events(50)

    # when events are published
    EventPublisher(Connection(redis_url), queue_name).publish(events)

    # expect both queues to hold all of them, in order
    assert drain_events(redis_url, queue_name, want=50, timeout_s=5) == events
    with Connection(redis_url) as conn, conn.SimpleQueue(audit) as consumer:
        got = []
        for _ in events:
            message = consumer.get(timeout=5)
            got.append(message.payload)
            message.ack()
    assert got == events


def test_refused_connection_fails_with_nothing_published(queue_name: str) -> None:
    # given a broker URL where nothing listens
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    publisher = EventPublisher(
        Connection(f"redis://127.0.0.1:{port}/13"), queue_name, retry_policy=ONE_RETRY
    )

    # when events are published, expect PublishFailed saying none went out
    with pytest.raises(PublishFailed) as failed:
        publisher.publish(make_events(3))
    assert failed.value.published == 0


def test_connection_dropped_mid_write_leaves_nothing_half_written(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    # given two bound queues, and a connection that drops after all but the last command left
    audit = bind_second_queue(redis_url, queue_name)
    publisher = EventPublisher(Connection(redis_url), queue_name, retry_policy=ONE_RETRY)
    events = make_events(100)

    # when published (the one retry dropped too), expect PublishFailed with none published
    with drop_before_last_command(times=2), pytest.raises(PublishFailed) as failed:
        publisher.publish(events)
    assert failed.value.published == 0

    # and nothing written on either queue
    assert redis_client.llen(queue_name) == 0
    assert redis_client.llen(audit.name) == 0

    # and once the broker answers again, the same events go out exactly once
    publisher.publish(events)
    assert drain_events(redis_url, queue_name, want=100, timeout_s=5) == events
    assert redis_client.llen(audit.name) == 100


def test_a_hiccup_is_retried_without_duplicates(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    # given a publisher with one retry, and a connection that drops once mid-write
    publisher = EventPublisher(Connection(redis_url), queue_name, retry_policy=ONE_RETRY)
    events = make_events(20)

    # when published, expect no error and every event once
    with drop_before_last_command(times=1):
        publisher.publish(events)
    assert redis_client.llen(queue_name) == 20
    assert drain_events(redis_url, queue_name, want=20, timeout_s=5) == events


def test_lost_bindings_are_declared_again_not_dropped(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    # given a publisher that declared its queue, then Redis lost the binding (flushed, restarted)
    publisher = EventPublisher(Connection(redis_url), queue_name)
    publisher.publish(make_events(1))
    redis_client.delete(f"_kombu.binding.{queue_name}")

    # when more events are published, expect them on the queue all the same
    publisher.publish(make_events(5))
    assert len(drain_events(redis_url, queue_name, want=6, timeout_s=5)) == 6


def test_without_the_expected_kombu_internals_events_go_one_by_one(
    redis_url: str,
    queue_name: str,
    round_trips: Callable[[], int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a kombu whose Redis channel lacks a method the batch path needs
    internals = (*events_module.KOMBU_REDIS_INTERNALS, "_no_such_method")
    monkeypatch.setattr(events_module, "KOMBU_REDIS_INTERNALS", internals)
    monkeypatch.setattr(events_module, "_warned", set())
    events = make_events(10)

    # when published (twice)
    publisher = EventPublisher(Connection(redis_url), queue_name)
    with caplog.at_level(logging.WARNING, logger="esms_callbacks.events.publish"):
        publisher.publish(events[:5])
        publisher.publish(events[5:])

    # expect every event delivered by the producer, one by one, and one warning saying why
    assert drain_events(redis_url, queue_name, want=10, timeout_s=5) == events
    assert round_trips() >= 10
    assert [r.message for r in caplog.records if "_no_such_method" in r.message] == [
        "kombu's Redis channel lacks ['_no_such_method']: publishing events one by one"
    ]


def policy_applied(queue: str, policy: str) -> bool:
    """Whether RabbitMQ lists `policy` as applied to `queue` (policies reach queues
    asynchronously)."""
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "--quiet", "--no-table-headers", "name", "policy"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return f"{queue}\t{policy}" in listed.splitlines()


@pytest.fixture
def rabbit_queue() -> Iterator[str]:
    """A fresh status queue on the local RabbitMQ; queue and exchange deleted afterwards."""
    try:
        with Connection(RABBIT_URL, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        pytest.skip(f"no RabbitMQ answering at {RABBIT_URL} ({exc})")
    name = f"esms.status.test-events-{uuid.uuid4().hex[:12]}"
    yield name
    with Connection(RABBIT_URL) as conn:
        queue = status_queue(name).bind(conn.default_channel)
        queue.delete()
        queue.exchange.delete()


def test_rabbitmq_events_arrive_in_order(rabbit_queue: str) -> None:
    # given 200 events
    events = make_events(200)

    # when published through RabbitMQ
    EventPublisher(Connection(RABBIT_URL), rabbit_queue).publish(events)

    # expect a plain SimpleQueue consumer to get each, in order, as persistent JSON messages
    assert consume_plainly(RABBIT_URL, rabbit_queue, len(events)) == events


def test_rabbitmq_refusing_an_event_is_an_error_not_a_silent_loss(rabbit_queue: str) -> None:
    # given a RabbitMQ policy that lets the status queue hold one message and refuse more
    policy = f"esms-test-{uuid.uuid4().hex[:8]}"
    limit = '{"max-length": 1, "overflow": "reject-publish"}'
    try:
        subprocess.run(
            [
                "rabbitmqctl",
                "set_policy",
                policy,
                f"^{rabbit_queue}$",
                limit,
                "--apply-to",
                "queues",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot set a RabbitMQ policy here ({exc})")
    try:
        with Connection(RABBIT_URL) as conn:  # declare the queue so the policy applies to it
            status_queue(rabbit_queue).bind(conn.default_channel).declare()
        wait_until(lambda: policy_applied(rabbit_queue, policy), 60, f"policy {policy} applied")
        # when three events are published
        with pytest.raises(PublishFailed) as caught:
            EventPublisher(Connection(RABBIT_URL), rabbit_queue, NO_RETRY).publish(make_events(3))
        # expect the broker's refusal of the second to surface: one published, held
        assert caught.value.published == 1
        assert consume_plainly(RABBIT_URL, rabbit_queue, 1) == make_events(1)
    finally:
        subprocess.run(["rabbitmqctl", "clear_policy", policy], capture_output=True, timeout=60)


def test_a_named_exchange_feeds_the_default_queue_and_every_subscriber(
    redis_url: str, redis_client: redis.Redis, queue_name: str
) -> None:
    # given ESMS_STATUS_EXCHANGE set, and a service that binds its own queue to it (plain kombu)
    exchange = f"{queue_name}.events"
    billing = Queue(
        f"{queue_name}.billing",
        Exchange(exchange, type="direct", durable=True),
        routing_key=exchange,
    )
    with Connection(redis_url) as conn:
        billing.bind(conn.default_channel).declare()
    events = make_events(20)
    try:
        # when events are published
        EventPublisher(Connection(redis_url), queue_name, exchange_name=exchange).publish(events)
        # expect the default queue (bound by the publisher) and the subscriber to get them all
        assert drain_events(redis_url, queue_name, want=20, timeout_s=5) == events
        assert drain_events(redis_url, billing.name, want=20, timeout_s=5) == events
    finally:
        for key in redis_client.scan_iter(match=f"*{exchange}*"):
            redis_client.delete(key)


@pytest.mark.parametrize(
    ("how", "expected"),
    [("keep", "0901888484"), ("mask", "090****484"), ("drop", None)],
)
def test_phone_numbers_in_events_are_kept_masked_or_dropped(how: str, expected: object) -> None:
    record = {"SMSID": "r", "SendStatus": 5, "SendFailed": 0, "PhoneNumber": "0901888484"}
    event = build_event("r", "oa", outcome_of(record), datetime.now(UTC), phone_numbers=how)
    assert event["record"]["PhoneNumber"] == expected
    assert record["PhoneNumber"] == "0901888484"  # the record itself is left alone
    assert masked("12345", "mask") == "1***5" and masked(None, "mask") is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://shop.example/esms/push/Secret-Push-Token-123456",
            "https://shop.example/<redacted>",
        ),
        (
            "https://u:p@shop.example:8443/cb?token=Secret-Push-Token-123456",
            "https://shop.example:8443/<redacted>",
        ),
        ("https://shop.example", "https://shop.example"),
        ("not a url Secret-Push-Token-123456", "<redacted>"),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_a_records_callback_url_leaves_the_worker_without_its_token(url: object, shown: object):
    # given a record whose CallbackUrl carries the push token (GetCallback returns it)
    record = {"SMSID": "r", "SendStatus": 5, "SendFailed": 0, "CallbackUrl": url}
    # when it becomes an event
    event = build_event("r", "oa", outcome_of(record), datetime.now(UTC))
    # expect scheme and host only, and the token nowhere in the event
    assert event["record"]["CallbackUrl"] == shown
    assert "Secret-Push-Token" not in json.dumps(event)
    assert record["CallbackUrl"] == url  # the record itself is left alone
