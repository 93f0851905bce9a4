"""Status events: built from outcomes, published as JSON to the status queue with kombu.

A consumer needs nothing of this project: `Connection(url).SimpleQueue("esms.status")`
declares the same queue (a direct exchange and a routing key of the same name).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from kombu import Connection, Exchange, Queue
from kombu.pools import producers

from workers.records import Outcome, decode

EVENT_VERSION = 1
# Broker hiccups are retried for about 20 s (well inside a lease), then the error surfaces and
# the RefIds go back to wait: an event is never silently dropped.
RETRY_POLICY = {"max_retries": 6, "interval_start": 0.5, "interval_step": 1.0, "interval_max": 5.0}


def event_id(ref_id: str, oa_id: str, state_key: str) -> str:
    """The same RefId in the same state always gives the same id."""
    return hashlib.sha256(f"{oa_id}\x1f{ref_id}\x1f{state_key}".encode()).hexdigest()[:32]


def build_event(
    ref_id: str,
    oa_id: str,
    outcome: Outcome,
    observed_at: datetime,
    submitted_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "event_id": event_id(ref_id, oa_id, outcome.state_key),
        "ref_id": ref_id,
        "oa_id": oa_id,
        "status": outcome.status,
        "terminal": outcome.terminal,
        "send_status": outcome.send_status,
        "error": outcome.error,
        "observed_at": observed_at.isoformat(),
        "submitted_at": submitted_at.isoformat() if submitted_at else None,
        "record": outcome.record,
        "decoded": decode(outcome.record) if outcome.record else None,
        "version": EVENT_VERSION,
    }


def status_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


class PublishFailed(Exception):
    """The broker stopped taking events after the first `published` of them."""

    def __init__(self, published: int, total: int) -> None:
        super().__init__(f"published {published} of {total} status events, then the broker failed")
        self.published = published


class EventPublisher:
    """Publish events persistently; raise if the broker cannot take them (nothing is dropped)."""

    def __init__(self, connection: Connection, queue_name: str) -> None:
        self._connection = connection
        self._queue = status_queue(queue_name)

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Publish in order; on failure raise PublishFailed saying how many went out."""
        if not events:
            return
        published = 0
        try:
            # The pool keeps one connection per process (kombu resets pools after fork).
            with producers[self._connection].acquire(block=True, timeout=30) as producer:
                for event in events:
                    self._send(producer, event)
                    published += 1
        except Exception as exc:
            raise PublishFailed(published, len(events)) from exc

    def _send(self, producer: Any, event: dict[str, Any]) -> None:
        producer.publish(
            event,
            exchange=self._queue.exchange,
            routing_key=self._queue.routing_key,
            declare=[self._queue],
            serializer="json",
            delivery_mode=2,
            retry=True,
            retry_policy=RETRY_POLICY,
        )
