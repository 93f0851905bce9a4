"""Reading status events as they come: the one consumer loop `tail`, the demo and the tests use.

Each event is acknowledged as it is handed out (taken off the queue); a consumer that must
not lose an event it failed to handle acknowledges after handling instead, as
examples/consumer.py shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from kombu import Connection, Queue


def read_events(
    broker_url: str,
    queue: Queue | str,
    *,
    stop: Callable[[], bool] = lambda: False,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    idle: Callable[[], None] | None = None,
    delete_after: bool = False,
    transport_options: Mapping[str, object] | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield event payloads from `queue` until `stop()` or `timeout_s` passes; call `idle()`
    whenever `poll_s` goes by without one; with `delete_after`, delete the queue at the end
    (a queue of the reader's own). `transport_options`: kombu's, e.g. a Sentinel broker's
    `master_name` (Settings.broker_transport_options)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    with Connection(broker_url, transport_options=dict(transport_options or {})) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while not stop() and (deadline is None or time.monotonic() < deadline):
                wait_s = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
                try:
                    message = simple.get(timeout=max(0.05, wait_s))
                except simple.Empty:
                    if idle is not None:
                        idle()
                    continue
                message.ack()
                yield message.payload
        finally:
            simple.close()
            if delete_after and isinstance(queue, Queue):
                queue.bind(conn.default_channel).delete()
