"""The push inbox: a Redis stream between the receiver's answer and the status events.

A receiver records a push here (one script call, engine/lua/inbox_record.lua: the per-source
rate, the inbox's size and the entry itself), names the account in the deployment's ready set
(ReadyAccounts) and only then answers eSMS 200. Appliers (push.applier, push.apply) take
accounts from the ready set and read their inboxes through a consumer group: an entry stays
pending until its push is settled and acknowledged, so a receiver killed at any point loses
nothing it answered 200 for; another receiver reclaims entries left pending too long.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from esms_callbacks.engine.keys import PUSHES_READY, AccountKeys
from esms_callbacks.engine.redis_values import as_text
from esms_callbacks.engine.replicas import NOT_DURABLE, AsyncReplicaFence
from esms_callbacks.engine.scripts import register_file
from esms_callbacks.push.parse import Push

GROUP = "appliers"
SWEEP_CHUNK = 500  # XLENs in one pipeline of a sweep

log = logging.getLogger("esms.receiver")


@dataclass(frozen=True)
class Recorded:
    ok: bool
    wait_s: float = 0.0  # over the source's rate: its turn, reserved, comes in this long
    retry_after_s: float = 0.0  # over the source's rate by more than the wait allowed
    full: bool = False


@dataclass(frozen=True)
class InboxEntry:
    entry_id: str
    push: Push | None  # None: the entry could not be read back (counted, then dropped)
    received_s: float


class PushRecorder:
    """The receiver's side: record one push, on the receiver's event loop."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: AccountKeys,
        per_source_rate: float,
        inbox_max: int,
        max_wait_s: float = 0.0,
        replicas: int = 0,
        replica_timeout_s: float = 1.0,
        namer: ReadyNamer | None = None,
    ) -> None:
        self._keys = keys
        # a push is answered 200 once its entry is on the replicas (ESMS_REDIS_REPLICAS)
        self._client = client
        self._fence = AsyncReplicaFence(
            client, keys.fence, replicas, replica_timeout_s, on_not_durable=self._count_not_durable
        )
        self._step_us = int(1e6 / per_source_rate) if per_source_rate > 0 else 0
        self._burst_us = 1_000_000  # a second's worth of pushes may arrive at once
        self._max_wait_us = int(max_wait_s * 1e6)
        self._inbox_max = inbox_max
        self._record = register_file(client, "gcra", "inbox_record")
        self._namer = ReadyNamer(client) if namer is None else namer  # shared: fewer calls

    async def record(self, push: Push, source_ip: str, waited: bool = False) -> Recorded:
        """Raise redis.RedisError when Redis cannot take it, NotDurable when its replicas do
        not confirm it (the caller answers 503 to both).
        `waited`: the push already waited for the turn a first call reserved."""
        k = self._keys
        payload = json.dumps({"ref_id": push.ref_id, "oa_id": push.oa_id, "record": push.record})
        status, value = await self._record(
            keys=[k.pushes, k.push_source(source_ip), k.stats],
            args=[
                self._step_us,
                self._burst_us,
                self._max_wait_us,
                self._inbox_max,
                payload,
                "1" if waited else "",
            ],
        )
        status, value = int(status), int(value)
        if status == 1:
            await self._name_ready()
            await self._fence.confirm()  # NotDurable: answered 503, eSMS pushes it again
            return Recorded(ok=True)
        if status == 2:
            return Recorded(ok=False, wait_s=value / 1000)
        if status == 0:
            return Recorded(ok=False, retry_after_s=value / 1000)
        return Recorded(ok=False, full=True)

    async def _count_not_durable(self) -> None:
        try:  # best effort: the primary may be the one that was lost
            await self._client.hincrby(self._keys.stats, NOT_DURABLE, 1)
        except (redis.RedisError, OSError) as exc:
            log.debug("could not count a push the replicas did not confirm: %s", exc)

    async def _name_ready(self) -> None:
        """Tell the appliers the account has new pushes. The push is recorded already: a
        name that cannot be written only delays it until the appliers' next sweep."""
        try:
            await self._namer.name(self._keys.account_id)
        except (redis.RedisError, OSError) as exc:
            log.debug("could not name an account ready (its sweep will find it): %s", exc)


class ReadyNamer:
    """Names accounts in the ready set for the receiver, on its event loop. Names asked for
    while a call is under way go together in the next one: under load one call names many
    accounts, where a call a push cost a round trip and a third of a push's CPU."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._name = register_file(client, "inbox_ready")
        self._waiting: dict[str, None] = {}  # for the next call, in the order asked
        self._next: asyncio.Future[None] | None = None  # done when the next call is
        self._caller: asyncio.Task[None] | None = None  # held: the loop keeps weak refs

    async def name(self, account_id: str) -> None:
        """Return once the account is named by a call sent after this was asked (so after
        the caller's own writes); raise what that call raised."""
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
        named = self._next
        self._waiting[account_id] = None
        if self._caller is None or self._caller.done():
            self._caller = loop.create_task(self._call_while_waiting())
        await asyncio.shield(named)  # a caller that goes away leaves the call to the others

    async def _call_while_waiting(self) -> None:
        while self._waiting:
            names, named = list(self._waiting), self._next
            self._waiting, self._next = {}, None
            assert named is not None  # set whenever a name waits
            try:
                await self._name(keys=[PUSHES_READY], args=names)
            except BaseException as exc:  # cancelled too: nobody is left waiting for ever
                failed = exc if isinstance(exc, Exception) else redis.ConnectionError("stopped")
                named.set_exception(failed)
                named.exception()  # read: no warning if every caller went away meanwhile
                if not isinstance(exc, Exception):
                    self._fail_waiting(failed)
                    raise
            else:
                named.set_result(None)

    def _fail_waiting(self, exc: Exception) -> None:
        if self._next is not None:
            self._next.set_exception(exc)
            self._next.exception()
        self._waiting, self._next = {}, None


class ReadyAccounts:
    """The appliers' side of the ready set: wait for an account with new pushes, name one
    again."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._name = register_file(client, "inbox_ready")

    def take(self, wait_s: float) -> str | None:
        """The account (its keys' name) named longest ago, waiting up to `wait_s` for one;
        taken off the set, so another applier takes it only once it is named again."""
        answer: Any = self._redis.bzpopmin(PUSHES_READY, timeout=wait_s)
        return None if answer is None else as_text(answer[1])

    def name(self, account_id: str) -> None:
        """Name the account again (its inbox holds more than one batch: the others first)."""
        self._name(keys=[PUSHES_READY], args=[account_id])


class PushInbox:
    """The appliers' side: read entries, reclaim those a dead applier left, acknowledge."""

    def __init__(self, client: redis.Redis, keys: AccountKeys) -> None:
        self._redis = client
        self._stream = keys.pushes
        self._reclaim_from = "0-0"

    def ensure_group(self) -> None:
        """Create the consumer group once; from the stream's start, so pushes recorded before
        any applier ran are applied too."""
        try:
            self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, consumer: str, count: int, block_ms: int | None = None) -> list[InboxEntry]:
        """New entries, waiting up to `block_ms` for the first (None: not at all). The group
        is created where it is missing (a first push, or Redis came back empty)."""

        def read() -> Any:
            return self._redis.xreadgroup(
                GROUP, consumer, {self._stream: ">"}, count=count, block=block_ms
            )

        answer = self._grouped(read)
        return [entry for _, items in answer or [] for entry in _entries(items)]

    def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[InboxEntry]:
        """Entries pending longer than `min_idle_ms` (their applier died, or their RefId was
        held by a request), taken over by `consumer`; the scan goes on where it stopped."""

        def claim() -> Any:
            return self._redis.xautoclaim(
                self._stream, GROUP, consumer, min_idle_ms, start_id=self._reclaim_from, count=count
            )

        answer = self._grouped(claim)
        next_id, items = answer[0], answer[1]
        self._reclaim_from = as_text(next_id)
        return _entries(items)

    def _grouped(self, command: Callable[[], Any]) -> Any:
        """`command()`, run again once the group is created if it was missing."""
        try:
            return command()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
        self.ensure_group()
        return command()

    def ack(self, entry_ids: list[str]) -> None:
        """Done with these: acknowledge and delete, so the stream holds only open work."""
        if entry_ids:
            pipe = self._redis.pipeline(transaction=True)
            pipe.xack(self._stream, GROUP, *entry_ids)
            pipe.xdel(self._stream, *entry_ids)
            pipe.execute()

    def waiting(self) -> int:
        """Entries recorded and not yet applied."""
        return int(self._redis.xlen(self._stream))

    @property
    def stream(self) -> str:
        return self._stream


def waiting_in(client: redis.Redis, inboxes: Sequence[PushInbox]) -> list[int]:
    """Entries recorded and not yet applied in each of `inboxes`: a few pipelines of single-key
    commands (a Cluster client sends each to its key's node), not a command each."""
    counts: list[int] = []
    for start in range(0, len(inboxes), SWEEP_CHUNK):
        with client.pipeline(transaction=False) as pipe:
            for inbox in inboxes[start : start + SWEEP_CHUNK]:
                pipe.xlen(inbox.stream)
            counts += [int(n) for n in pipe.execute()]
    return counts


def leave_groups(client: redis.Redis, inboxes: Sequence[PushInbox], consumer: str) -> None:
    """A stopping applier's `consumer` leaves the group of each of `inboxes` where it holds
    nothing pending."""
    _remove_consumers(client, inboxes, lambda info: as_text(info["name"]) == consumer)


def forget_idle_consumers(client: redis.Redis, inboxes: Sequence[PushInbox], idle_s: float) -> None:
    """Remove consumers idle longer than `idle_s` with nothing pending from each of `inboxes`'
    groups: receivers killed without a goodbye would otherwise stay there for ever."""
    _remove_consumers(client, inboxes, lambda info: int(info["idle"]) > idle_s * 1000)


def _remove_consumers(
    client: redis.Redis, inboxes: Sequence[PushInbox], chosen: Callable[[Any], bool]
) -> None:
    """Remove the consumers `chosen` picks, and that hold nothing pending (what a consumer
    holds stays, taken over by the others as usual, which a consumer removed would not be),
    from each inbox's group: two pipelines, not two commands an inbox."""
    for start in range(0, len(inboxes), SWEEP_CHUNK):
        chunk = inboxes[start : start + SWEEP_CHUNK]
        with client.pipeline(transaction=False) as pipe:
            for inbox in chunk:
                pipe.xinfo_consumers(inbox.stream, GROUP)
            answers = pipe.execute(raise_on_error=False)  # no group there (yet): no consumer
        removed = [
            (inbox, as_text(info["name"]))
            for inbox, consumers in zip(chunk, answers, strict=True)
            if not isinstance(consumers, Exception)
            for info in consumers
            if int(info["pending"]) == 0 and chosen(info)
        ]
        if removed:
            with client.pipeline(transaction=False) as pipe:
                for inbox, name in removed:
                    pipe.xgroup_delconsumer(inbox.stream, GROUP, name)
                pipe.execute(raise_on_error=False)


def _entries(items: list[Any]) -> list[InboxEntry]:
    out = []
    for entry_id, fields in items:
        if fields is None:  # deleted while pending
            continue
        fields = {as_text(k): as_text(v) for k, v in fields.items()}
        out.append(
            InboxEntry(as_text(entry_id), _decode(fields.get("push", "")), _received(fields))
        )
    return out


def _decode(text: str) -> Push | None:
    try:
        data = json.loads(text)
        return Push(str(data["ref_id"]), str(data["oa_id"]), dict(data["record"]))
    except (ValueError, KeyError, TypeError):
        return None


def _received(fields: dict[str, str]) -> float:
    try:
        return int(fields.get("received_ms", "0")) / 1000
    except ValueError:
        return 0.0
