"""Read status events straight from the broker's Redis list, without consuming them.

kombu's Redis transport LPUSHes each message (a JSON envelope whose body is base64 JSON) on a
list named after the queue and consumers BRPOP from the tail. Nobody consumes a benchmark's
status queue, so the list only grows at the head; reading by indices counted from the tail
(which LPUSH does not move) picks up exactly the events not read yet. A 120,000-event read
takes a few seconds, in chunks.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

_CHUNK = 5000


def decode(raw: bytes | str) -> dict[str, Any]:
    """The event (a dict) inside one kombu message as stored in Redis."""
    envelope = json.loads(raw)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    event: dict[str, Any] = json.loads(body)
    return event


@dataclass
class StatusTally:
    """What the events read so far say."""

    events: int = 0
    terminal_events: int = 0
    # RefId -> the distinct event ids of its terminal events (one is right; more is a bug)
    terminal: dict[str, set[str]] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def finished(self) -> int:
        return len(self.terminal)

    @property
    def duplicate_terminal_events(self) -> int:
        return self.terminal_events - len(self.terminal)

    @property
    def conflicting(self) -> int:
        """RefIds with more than one distinct terminal event."""
        return sum(1 for ids in self.terminal.values() if len(ids) > 1)


class StatusQueueReader:
    def __init__(self, client: redis.Redis, queue: str) -> None:
        self._client = client
        self._queue = queue
        self.tally = StatusTally()

    def queued(self) -> int:
        """Events on the queue (read or not): cheap, no decoding."""
        return int(self._client.llen(self._queue))

    def poll(self) -> StatusTally:
        """Read the events published since the last poll."""
        total = self.queued()
        while self.tally.events < total:
            read = self.tally.events
            count = min(_CHUNK, total - read)
            # Oldest unread first: tail-relative indices -(read + count) .. -(read + 1).
            raw = self._client.lrange(self._queue, -(read + count), -(read + 1))
            for item in reversed(raw):
                self._count(decode(item))
        return self.tally

    def _count(self, event: dict[str, Any]) -> None:
        tally = self.tally
        tally.events += 1
        tally.statuses[str(event.get("status"))] += 1
        if event.get("terminal"):
            tally.terminal_events += 1
            tally.terminal.setdefault(str(event["ref_id"]), set()).add(str(event["event_id"]))
