"""Consume status events with a function of your own: typed, deduplicated, in order, acked last.

    from esms_callbacks.events.handler import consume_events

    def handle(event: StatusEvent) -> None:  # called once per new, further state of a RefId
        ...

    consume_events(handle)  # CELERY_BROKER_URL, ESMS_STATUS_QUEUE, a Redis store: until stopped

Each message is acknowledged after `handle` returns; if it raises, the message goes back to
the queue and the exception stops the loop (run it under a supervisor that restarts it). A
crash between `handle` returning and the ack may hand the same event to `handle` again: make
it idempotent, or keep the event_id in the same transaction as its effect. The Django app
(esms_callbacks.contrib.django) reads through the same loop, `consume_messages`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping

from kombu import Connection, Queue

from esms_callbacks.events.model import StatusEvent
from esms_callbacks.events.stores import EventStore, RedisEventStore

log = logging.getLogger(__name__)

Handler = Callable[[StatusEvent], None]


def _never() -> bool:
    return False


def consume_messages(
    apply: Handler,
    *,
    broker_url: str,
    queue: Queue | str,
    stop: Callable[[], bool] = _never,
    poll_s: float = 1.0,
    max_events: int | None = None,
    transport_options: Mapping[str, object] | None = None,
) -> int:
    """Hand every event on `queue` to `apply`, typed, and ack it after `apply` returns, until
    `stop()` (checked between events and every `poll_s` while none comes) or `max_events`
    were taken. If `apply` raises (or the event cannot be read: UnsupportedEvent, upgrade),
    the message is put back on the queue and the exception is raised. Returns the count."""
    taken = 0
    with Connection(broker_url, transport_options=dict(transport_options or {})) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while not stop() and (max_events is None or taken < max_events):
                try:
                    message = simple.get(timeout=poll_s)
                except simple.Empty:
                    continue
                try:
                    apply(StatusEvent.from_payload(message.payload))
                except BaseException:
                    # Not acked: back to the queue now (the broker would restore it when the
                    # connection goes anyway, so a failed requeue changes nothing).
                    with contextlib.suppress(Exception):
                        message.requeue()
                    raise
                message.ack()
                taken += 1
        finally:
            simple.close()
    return taken


def consume_events(
    handler: Handler,
    store: EventStore | None = None,
    *,
    broker_url: str | None = None,
    queue: Queue | str | None = None,
    stop: Callable[[], bool] = _never,
    poll_s: float = 1.0,
    max_events: int | None = None,
    transport_options: Mapping[str, object] | None = None,
) -> int:
    """Call `handler` once per new event_id that moves its RefId further (a duplicate, or a
    `pending` after a `sent`, is acked without a call), as `store` (shared by every consumer
    of the queue) remembers it; ack each message after `handler` returned.

    Defaults from the environment, as the workers read it (esms_callbacks.settings): the
    broker CELERY_BROKER_URL (its Sentinel options too), the queue ESMS_STATUS_QUEUE bound
    to the events exchange (ESMS_STATUS_EXCHANGE), and a RedisEventStore on ESMS_REDIS_URL
    (by default the broker's Redis). Returns how many messages were taken (`max_events`)."""
    if broker_url is None or queue is None or store is None:
        from esms_callbacks.events.publish import status_queue
        from esms_callbacks.settings import Settings

        settings = Settings.from_env()
        if broker_url is None:
            broker_url = settings.broker_url
            transport_options = transport_options or settings.broker_transport_options
        if queue is None:
            queue = status_queue(settings.status_queue, settings.events_exchange)
        if store is None:
            store = RedisEventStore.from_url(settings.require_redis_url())
    kept = store

    def apply(event: StatusEvent) -> None:
        if not kept.is_new(event):
            log.debug(
                "event %s of %s: not further than the one handled", event.event_id, event.ref_id
            )
            return
        handler(event)
        kept.remember(event)

    return consume_messages(
        apply,
        broker_url=broker_url,
        queue=queue,
        stop=stop,
        poll_s=poll_s,
        max_events=max_events,
        transport_options=transport_options,
    )
