"""Status events: built from outcomes, published as JSON to the status queue with kombu.

A consumer needs nothing of this project: `Connection(url).SimpleQueue("esms.status")`
declares the same queue (a direct exchange and a routing key of the same name).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from kombu import Connection, Exchange, Queue
from kombu.pools import producers
from kombu.serialization import dumps as serialize
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps as json_dumps

from esms_callbacks.accounts import DEFAULT_ACCOUNT
from esms_callbacks.errors import NoQueueBound, PublishFailed
from esms_callbacks.esms.records import Outcome, decode
from esms_callbacks.events.model import DELIVERY_EVENT_VERSION, EVENT_VERSION
from esms_callbacks.retry_policy import PUBLISH_RETRY

log = logging.getLogger(__name__)

# Where an event's status came from: GetCallback, a push, QueryZnsStatus, GetZaloMessageStatus.
SOURCE_POLL, SOURCE_PUSH, SOURCE_QUERY, SOURCE_DELIVERY = "poll", "push", "query", "delivery"
SOURCE_RECONCILE = "reconcile"  # eSMS's ledger (GetSmsSentData_V2)
REDACTED = "<redacted>"
PERSISTENT = 2  # AMQP delivery_mode: the broker keeps the message across a restart
# What the Redis batch path calls on kombu's Redis channel: private methods, checked against
# kombu 5.7.0. If one is missing, events go out one by one through the producer (slower, same
# messages) and a warning says so once.
KOMBU_REDIS_INTERNALS = (
    "prepare_message",
    "_inplace_augment_message",
    "_lookup",
    "_get_message_priority",
    "_q_for_pri",
    "conn_or_acquire",
)


def event_id(ref_id: str, oa_id: str, state_key: str, account: str = DEFAULT_ACCOUNT) -> str:
    """The same RefId in the same state of the same account always gives the same id. The
    `default` account's ids leave the account out: they are the ids of before accounts."""
    named = f"{oa_id}\x1f{ref_id}\x1f{state_key}"
    if account != DEFAULT_ACCOUNT:
        named = f"{account}\x1e{named}"
    return hashlib.sha256(named.encode()).hexdigest()[:32]


def build_event(
    ref_id: str,
    oa_id: str,
    outcome: Outcome,
    observed_at: datetime,
    submitted_at: datetime | None = None,
    source: str = SOURCE_POLL,
    phone_numbers: str = "keep",
    account: str = DEFAULT_ACCOUNT,
    track_delivery: bool = False,
) -> dict[str, Any]:
    """The event of one RefId's state; `phone_numbers` (keep, mask, drop) decides what its
    record says of the recipient's phone number (personal data). With `track_delivery`
    the event is of version 2 (events.model): `sent` is not terminal, `delivered` is, and
    `delivered_at` says when; without it, version 1 as before."""
    record = outcome.record
    if record is not None and phone_numbers != "keep" and "PhoneNumber" in record:
        record = {**record, "PhoneNumber": masked(record["PhoneNumber"], phone_numbers)}
    if record is not None and "CallbackUrl" in record:
        record = {**record, "CallbackUrl": redacted_url(record["CallbackUrl"])}
    event = {
        "event_id": event_id(ref_id, oa_id, outcome.state_key, account),
        "account": account,
        "ref_id": ref_id,
        "oa_id": oa_id,
        "status": outcome.status,
        "terminal": outcome.terminal,
        "send_status": outcome.send_status,
        "error": outcome.error,
        "observed_at": observed_at.isoformat(),
        "submitted_at": submitted_at.isoformat() if submitted_at else None,
        "record": record,
        "decoded": decode(record, outcome.error_info) if record else None,
        "version": EVENT_VERSION,
        "source": source,
    }
    if track_delivery:
        event["version"] = DELIVERY_EVENT_VERSION
        delivered_at = outcome.delivered_at
        event["delivered_at"] = delivered_at.isoformat() if delivered_at else None
    return event


# An event's source, in a summary.
SOURCE_LETTERS = {
    SOURCE_POLL: "p",
    SOURCE_PUSH: "h",
    SOURCE_QUERY: "q",
    SOURCE_DELIVERY: "d",
    SOURCE_RECONCILE: "r",
}


def event_summary(event: dict[str, Any]) -> str:
    """What a RefId's record keeps of the last event published for it (`esms-callbacks
    show`): `state|observed s|source|error code`, a few dozen bytes (engine.backlog keeps
    it in a compact Redis hash, where a value must stay short). The event id is not kept:
    it follows from the OA, the RefId and the state."""
    error = event.get("error") or {}
    code = error.get("code") if isinstance(error, dict) else None
    observed_s = int(datetime.fromisoformat(event["observed_at"]).timestamp())
    send_status = event.get("send_status")
    state = f"{event['status']}:{'' if send_status is None else send_status}"
    source = SOURCE_LETTERS.get(event.get("source", SOURCE_POLL), "p")
    return f"{state}|{observed_s}|{source}|{code if isinstance(code, int) else ''}"


def summary_event(
    ref_id: str, oa_id: str, summary: str, account: str = DEFAULT_ACCOUNT
) -> dict[str, Any] | None:
    """The last event a summary describes (event_id, status, send_status, error code,
    observed_at, source), or None for an empty or unreadable one."""
    parts = summary.split("|")
    if len(parts) != 4 or not parts[0]:
        return None
    state, observed_s, source, code = parts
    status, _, send_status = state.partition(":")
    sources = {letter: name for name, letter in SOURCE_LETTERS.items()}
    return {
        "event_id": event_id(ref_id, oa_id, state, account),
        "status": status,
        "send_status": int(send_status) if send_status.lstrip("-").isdigit() else None,
        "error": {"code": int(code)} if code.lstrip("-").isdigit() else None,
        "observed_at": datetime.fromtimestamp(int(observed_s), UTC).isoformat()
        if observed_s.isdigit()
        else None,
        "source": sources.get(source, SOURCE_POLL),
    }


def redacted_url(url: object) -> str | None:
    """A record's CallbackUrl as events may show it: scheme and host only. Its path holds the
    push token (`/esms/push/<token>`), and whoever holds the token can push statuses."""
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return REDACTED
    if not parts.scheme or not host:
        return REDACTED
    shown = f"{parts.scheme}://{host}{f':{port}' if port else ''}"
    return shown + "/" + REDACTED if (parts.path.strip("/") or parts.query) else shown


def masked(phone: object, how: str) -> object:
    """'0901888484' -> '090****484' (mask) or None (drop); anything not a string as is."""
    if how == "drop":
        return None
    if not isinstance(phone, str) or not phone:
        return phone
    shown = 3 if len(phone) >= 9 else 1
    return phone[:shown] + "*" * max(0, len(phone) - 2 * shown) + phone[-shown:]


def status_exchange(name: str) -> Exchange:
    """The exchange events are published to: direct, durable, every event with the routing
    key `name`, so each queue bound with that key gets its own copy."""
    return Exchange(name, type="direct", durable=True)


def status_queue(name: str, exchange: str | None = None) -> Queue:
    """A durable queue `name` bound to the events exchange (by default named like the queue,
    as a plain `SimpleQueue(name)` declares it)."""
    exchange = exchange or name
    return Queue(name, status_exchange(exchange), routing_key=exchange, durable=True)


class EventPublisher:
    """Publish events persistently; raise if the broker cannot take them (nothing is dropped).

    On kombu's Redis transport the events of one call go out in one MULTI/EXEC, all or nothing;
    on any other transport (RabbitMQ) one by one through a kombu producer, in order, each
    confirmed by the broker (publisher confirms) before the next.
    """

    def __init__(
        self,
        connection: Connection,
        queue_name: str,
        retry_policy: Mapping[str, float] = PUBLISH_RETRY,
        exchange_name: str | None = None,
        declare_queue: bool = True,
    ) -> None:
        self._connection = connection
        # The default queue is declared (and bound) with every publish: without a queue bound
        # the broker would drop events nobody had subscribed to yet. Without it (consumers
        # bind queues of their own), a publish that no queue would receive fails instead.
        self._queue = status_queue(queue_name, exchange_name)
        self._declare_queue = declare_queue
        self._retry_policy = dict(retry_policy)
        if not isinstance(connection.transport, kombu_redis.Transport):
            # AMQP publishes are fire-and-forget: without publisher confirms a message the
            # broker refuses is gone while its RefIds are settled. With them, "published"
            # means "held by the broker", at one round trip per event.
            connection.transport_options.setdefault("confirm_publish", True)

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Publish in order; on failure raise PublishFailed saying how many went out."""
        if not events:
            return
        published = 0
        try:
            # The pool keeps one connection per process (kombu resets pools after fork).
            with producers[self._connection].acquire(block=True, timeout=30) as producer:
                if self._can_batch(producer.connection):
                    self._push_batch_with_retry(producer, events)
                    published = len(events)  # one transaction: all of them or none
                else:
                    for event in events:
                        self._send(producer, event)
                        published += 1
        except NoQueueBound as exc:
            raise PublishFailed(published, len(events), str(exc)) from exc
        except Exception as exc:
            raise PublishFailed(published, len(events)) from exc

    def _can_batch(self, connection: Connection) -> bool:
        """Whether the Redis batch path gives the same messages as `producer.publish` here."""
        if not isinstance(connection.transport, kombu_redis.Transport):
            return False  # RabbitMQ: a publish is one frame, no round trip; nothing to gain
        # Fanout/topic routing and x-expires refreshes are left to kombu itself.
        if self._queue.exchange.type != "direct" or self._queue.expires is not None:
            return False
        missing = [m for m in KOMBU_REDIS_INTERNALS if not hasattr(connection.transport.Channel, m)]
        if missing:
            _warn_once(f"kombu's Redis channel lacks {missing}: publishing events one by one")
        return not missing

    def _push_batch_with_retry(self, producer: Any, events: list[dict[str, Any]]) -> None:
        # As Producer.publish(retry=True) does: reconnecting, the first connect included, obeys
        # the policy; each attempt is a whole transaction, so a retry never half-repeats one.
        producer.connection.transport_options.update(self._retry_policy)
        push = producer.connection.ensure(producer, self._push_batch, **self._retry_policy)
        push(producer, events)

    def _push_batch(self, producer: Any, events: list[dict[str, Any]]) -> None:
        channel = producer.channel  # after a reconnect, the revived one
        producer.maybe_declare(self._queue if self._declare_queue else self._queue.exchange)
        exchange, routing_key = self._queue.exchange.name, self._queue.routing_key
        queues = bound_queues(channel, self._queue, rebind=self._declare_queue)
        if not queues:
            raise NoQueueBound(self._no_queue_bound())
        messages = [redis_message(channel, event, exchange, routing_key) for event in events]
        push_to_redis(channel, messages, queues)

    def _send(self, producer: Any, event: dict[str, Any]) -> None:
        # Without the default queue, `mandatory`: an event no queue would receive comes back
        # (basic.return, before the confirm) and fails the publish instead of vanishing.
        producer.publish(
            event,
            exchange=self._queue.exchange,
            routing_key=self._queue.routing_key,
            declare=[self._queue] if self._declare_queue else [self._queue.exchange],
            mandatory=not self._declare_queue,
            serializer="json",
            delivery_mode=PERSISTENT,
            retry=True,
            retry_policy=self._retry_policy,
        )

    def _no_queue_bound(self) -> str:
        return (
            f"no queue is bound to exchange {self._queue.exchange.name!r} with routing key "
            f"{self._queue.routing_key!r} (ESMS_STATUS_DEFAULT_QUEUE=off): bind your "
            "consumers' queues, or turn the default queue on; the RefIds wait"
        )


# The Redis batch path: kombu's Redis channel internals (KOMBU_REDIS_INTERNALS) are used here only.


def redis_message(channel: Any, event: dict[str, Any], exchange: str, routing_key: str) -> Any:
    """The message `producer.publish(event, serializer="json", delivery_mode=2)` hands kombu's
    virtual channel, after basic_publish adds body encoding, delivery tag and delivery_info."""
    content_type, content_encoding, body = serialize(event, serializer="json")
    message = channel.prepare_message(
        body, 0, content_type, content_encoding, {}, {"delivery_mode": PERSISTENT}
    )
    channel._inplace_augment_message(message, exchange, routing_key)
    return message


def bound_queues(channel: Any, queue: Queue, rebind: bool = True) -> list[str]:
    """Every queue bound to `queue`'s exchange and routing key, as kombu routes a publish;
    `rebind`: bind `queue` again if none is (the default queue is on)."""
    exchange, routing_key = queue.exchange.name, queue.routing_key
    queues: list[str] = channel._lookup(exchange, routing_key)
    if not queues and rebind:
        # Redis lost kombu's bindings (flushed, or restarted empty) while this process still
        # remembers declaring them, so kombu would drop the events: bind again instead.
        bound = queue.bind(channel)
        bound.queue_unbind()
        bound.queue_bind()
        queues = channel._lookup(exchange, routing_key)
    return queues


def push_to_redis(channel: Any, messages: list[Any], queues: list[str]) -> None:
    """Put every message on every queue as kombu's Redis `Channel._put` does (LPUSH to the
    queue's list for the message's priority), all in one MULTI/EXEC: every event or none.

    Redis does not roll back a command that fails inside EXEC (WRONGTYPE on a misused key);
    execute() then raises and the call counts as not published: duplicates later, no loss.
    """
    lists: defaultdict[str, list[str]] = defaultdict(list)
    for message in messages:
        priority = channel._get_message_priority(message, reverse=False)
        payload = json_dumps(message)
        for queue in queues:
            lists[channel._q_for_pri(queue, priority)].append(payload)
    with channel.conn_or_acquire() as client, client.pipeline(transaction=True) as pipe:
        for key, payloads in lists.items():
            # LPUSH k a b == LPUSH k a; LPUSH k b: consumers (BRPOP) still get `a` first.
            pipe.lpush(key, *payloads)
        pipe.execute()


def queue_depth(connection: Connection, name: str) -> tuple[int, int | None]:
    """Events waiting in queue `name`, and its consumers (None where the broker cannot tell:
    Redis); (0, None) for a queue that does not exist (yet)."""
    channel = connection.channel()
    try:
        _, events, consumers = channel.queue_declare(queue=name, passive=True)
    except connection.channel_errors:
        return 0, None  # passive declare of a missing queue
    finally:
        with contextlib.suppress(Exception):
            channel.close()
    redis_broker = isinstance(connection.transport, kombu_redis.Transport)
    return int(events), None if redis_broker else int(consumers)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)
