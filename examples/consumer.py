"""A status-event consumer for a pipeline: plain kombu, duplicates dropped by event_id.

Run: python -m examples.consumer   (prints each new event; Ctrl-C stops)

Events are delivered at least once: after a crash the same event (same event_id) may arrive
again. Here a bounded in-memory set drops them; in production keep event_id unique in your
database (an upsert or a unique index) so duplicates are dropped across restarts too.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from kombu import Connection

Event = dict[str, Any]


class Deduplicator:
    """Remember the last `capacity` event ids."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def first_time(self, event_id: str) -> bool:
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            return False
        self._seen[event_id] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True


def consume(
    broker_url: str,
    queue: str,
    handle: Callable[[Event], None],
    stop: Callable[[], bool] = lambda: False,
    dedup: Deduplicator | None = None,
) -> None:
    """Call `handle` once per new event; ack only after it returned (no event is lost)."""
    dedup = dedup or Deduplicator()
    with Connection(broker_url) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while not stop():
                try:
                    message = simple.get(timeout=1.0)
                except simple.Empty:
                    continue
                event = message.payload
                if dedup.first_time(event["event_id"]):
                    handle(event)
                message.ack()
        finally:
            simple.close()


if __name__ == "__main__":

    def show(event: Event) -> None:
        print(event["observed_at"], event["ref_id"], event["status"], event["error"] or "")

    with contextlib.suppress(KeyboardInterrupt):
        consume(
            os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"),
            os.environ.get("ESMS_STATUS_QUEUE", "esms.status"),
            show,
        )
