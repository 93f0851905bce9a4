"""Where a consumer remembers how far each message got: drop duplicates and steps back.

    store = RedisEventStore.from_url("redis://localhost:6379/0")
    if store.is_new(event):      # a new event_id, further than any handled for its RefId
        handle(event)
        store.remember(event)    # only after the handler returned

Events arrive at least once and, with several consumers, in any order. A store keeps one
state per (account, RefId): the furthest one handled (esms.records.state_rank: a terminal
state over `pending` by SendStatus over `not_found`; `delivered` after `sent`), so the same
event twice, or a `pending` after a `sent`, is not new. RedisEventStore for processes that
share it; MemoryEventStore for one process (scripts, tests).
"""

from __future__ import annotations

from typing import Any, Protocol

import redis

from esms_callbacks.engine.scripts import register_file
from esms_callbacks.events.model import StatusEvent

DEFAULT_PREFIX = "esms:consumer"
# How long a RefId's state is kept after its last change: past it, a duplicate or a late
# step back of that RefId would be handled again. Events of one RefId are at most ESMS_MAX_AGE
# (7 days by default) apart; most are minutes apart.
DEFAULT_TTL_S = 3 * 24 * 3600


class EventStore(Protocol):
    """What consume_events asks of a store."""

    def is_new(self, event: StatusEvent) -> bool:
        """Whether `event` moves its RefId further than every event handled before."""
        ...

    def remember(self, event: StatusEvent) -> None:
        """Record `event` as handled (a no-op if a further one was recorded meanwhile)."""
        ...


class RedisEventStore:
    """One small hash per RefId (`{prefix}:{account}:{ref_id}`: `rank`, `event_id`), living
    `ttl_s` after its last change; shared by every consumer of the same queue."""

    def __init__(
        self, client: redis.Redis, *, prefix: str = DEFAULT_PREFIX, ttl_s: int = DEFAULT_TTL_S
    ) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be a positive number of seconds, not {ttl_s!r}")
        self._client = client
        self._prefix = prefix
        self._ttl_s = int(ttl_s)
        self._remember = register_file(client, "consumer_remember")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisEventStore:
        return cls(redis.Redis.from_url(url), **options)

    def key(self, account: str, ref_id: str) -> str:
        """The one place a RefId's key is named."""
        return f"{self._prefix}:{account}:{ref_id}"

    def is_new(self, event: StatusEvent) -> bool:
        # The same event_id is the same state, so of the same rank: a duplicate is not new.
        rank = self._client.hget(self.key(event.account, event.ref_id), "rank")
        return rank is None or event.rank > int(rank)

    def remember(self, event: StatusEvent) -> None:
        key = self.key(event.account, event.ref_id)
        self._remember(keys=[key], args=[event.rank, event.event_id, self._ttl_s])


class MemoryEventStore:
    """The same rules in a dict, for one process: forgotten when it exits, never trimmed."""

    def __init__(self) -> None:
        self._furthest: dict[tuple[str, str], tuple[int, str]] = {}

    def is_new(self, event: StatusEvent) -> bool:
        kept = self._furthest.get((event.account, event.ref_id))
        return kept is None or event.rank > kept[0]

    def remember(self, event: StatusEvent) -> None:
        key = (event.account, event.ref_id)
        kept = self._furthest.get(key)
        if kept is None or event.rank > kept[0]:
            self._furthest[key] = (event.rank, event.event_id)
