"""The objects a process needs for one account (Runtime), and for every account it serves
(Runtimes), built once from their settings and passed in.

A worker builds its Runtimes when it starts (esms_callbacks.tasks.context) and gives them the
way it queues a drain task; the receiver and the CLI build their own. The accounts share the
process's Redis client and broker connection (SharedClients): a thousand accounts are a
thousand sets of keys, not a thousand connections.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import redis

from esms_callbacks.accounts import DEFAULT_ACCOUNT, Account, AccountBook
from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.clock import RedisClock
from esms_callbacks.engine.dispatch import DrainerDispatch
from esms_callbacks.engine.drainer import Drainer
from esms_callbacks.engine.health import AccountPause, Breaker
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.ledger_sweep import LedgerSweep
from esms_callbacks.engine.limiter import RateLimiter
from esms_callbacks.engine.message_asks import Endpoint, MessageAsks
from esms_callbacks.engine.notes import Notes
from esms_callbacks.engine.paced import PacedSender, Send
from esms_callbacks.engine.redis_connect import connect
from esms_callbacks.engine.replicas import ReplicaFence
from esms_callbacks.engine.semaphore import LeaseSemaphore
from esms_callbacks.engine.stats import RequestStats
from esms_callbacks.errors import NotDurable, PublishFailed
from esms_callbacks.events.publish import EventPublisher
from esms_callbacks.push.inbox import PushInbox
from esms_callbacks.settings import Settings
from esms_callbacks.terms import CALLBACK, DELIVERY, LEDGER, QUERY, QUERY_OFF, Terms
from esms_callbacks.tuning import LEDGER_PAGE_SIZE, RETIRED_CLOSE_AFTER_S

if TYPE_CHECKING:  # the eSMS client (aiohttp) is loaded by workers only, when first used
    from esms_callbacks.esms.client import CallbackAnswer, EsmsClient


RedisClient = redis.Redis  # where a class's own `redis` hides the module


class SharedClients:
    """What every account of a process uses alike: the project's Redis and the broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def redis(self) -> redis.Redis:
        # ConfigError naming what to set, if there is no Redis URL
        return connect(self.settings.redis_target())

    @cached_property
    def publisher(self) -> EventPublisher:
        s = self.settings
        return EventPublisher(
            s.broker_connection(),
            s.status_queue,
            exchange_name=s.events_exchange,
            declare_queue=s.status_default_queue,
        )

    @cached_property
    def broker_redis(self) -> RedisClient | None:
        """The broker's Redis, to confirm events with its replicas; None if it is not Redis."""
        target = self.settings.broker_redis_target()
        if target is None:
            return None
        return self.redis if target.url == self.settings.redis_url else connect(target)


@dataclass
class Runtime:
    """One account's objects in this process, built when first used."""

    settings: Settings  # the deployment's
    account: Account
    # How this process queues one drain task of this account (the worker's Celery app); None
    # where no drain is ever asked for (the receiver, the CLI's read-only commands).
    queue_drain: Callable[[str], object] | None = None
    shared: SharedClients = field(default=None)  # type: ignore[assignment]
    # Whether the account shares the worker pool with others (engine/dispatch.py: turns).
    takes_turns: Callable[[], bool] = lambda: False

    def __post_init__(self) -> None:
        if self.shared is None:
            self.shared = SharedClients(self.settings)

    @property
    def name(self) -> str:
        """The account's name (producers' `account=`, events, logs, metrics, turns)."""
        return self.account.name

    @property
    def terms(self) -> Terms:
        return self.account.terms

    @property
    def redis(self) -> redis.Redis:
        return self.shared.redis

    @cached_property
    def keys(self) -> AccountKeys:
        return AccountKeys(self.account.require_key_id())

    @cached_property
    def clock(self) -> RedisClock:
        return RedisClock(self.redis, route_key=self.keys.rate)

    @cached_property
    def backlog(self) -> Backlog:
        s = self.settings
        return Backlog(self.redis, self.keys, s.done_ttl_s, self.terms.max_refs_per_request)

    @cached_property
    def limiter(self) -> RateLimiter:
        """GetCallback's limiter."""
        return self.limiter_of(CALLBACK)

    def limiter_of(self, endpoint: str) -> RateLimiter:
        """One endpoint's limiter: its own budget, shared by every process and host."""
        s, k = self.settings, self.keys
        terms = self.terms.endpoint(endpoint)
        return RateLimiter(
            self.redis,
            (k.rate_of(endpoint), k.paused, k.health_of(endpoint)),
            terms.rate_interval_s,
            terms.rate_margin_s,
            probe_timeout_s=self.lease_s,
            max_backoff_s=s.backoff_max_s,
            replicas=s.redis_replicas,
            replica_timeout_s=s.redis_replica_timeout_s,
        )

    def breaker_of(self, endpoint: str) -> Breaker:
        s = self.settings
        key = self.keys.health_of(endpoint)
        return Breaker(self.redis, key, s.breaker_after, s.retry_base_s, s.backoff_max_s)

    @cached_property
    def notes(self) -> Notes:
        return Notes(self.redis, self.keys)

    @cached_property
    def message_asks(self) -> MessageAsks:
        """QueryZnsStatus and GetZaloMessageStatus, each at its own rate."""
        endpoints = {}
        for name in (QUERY, DELIVERY):
            limiter = self.limiter_of(name)
            spacing_s = self.terms.endpoint(name).spacing_s
            endpoints[name] = Endpoint(
                self.terms.endpoint(name),
                limiter,
                self.breaker_of(name),
                PacedSender(limiter, spacing_s, self.clock),
            )
        return MessageAsks(
            self.settings,
            self.terms,
            endpoints[QUERY],
            endpoints[DELIVERY],
            self.pause,
            self._query_request,
            self._delivery_request,
            self.clock,
        )

    def ledger_sweep(self) -> LedgerSweep:
        """The sweep of the account's ledger at eSMS (GetSmsSentData_V2), at its own rate."""
        limiter = self.limiter_of(LEDGER)
        return LedgerSweep(
            self.settings,
            self.account,
            self.backlog,
            self.notes,
            self.publish_durably,
            self.clock,
            PacedSender(limiter, self.terms.endpoint(LEDGER).spacing_s, self.clock),
            self._ledger_request,
        )

    def _ledger_request(
        self, sms_type: int, from_local: datetime, to_local: datetime, page: int
    ) -> Send[Any]:
        return lambda gate, on_sent: self.client.sent_data(
            sms_type, from_local, to_local, page, LEDGER_PAGE_SIZE, gate, on_sent
        )

    def _query_request(self, sms_id: str, sms_type: int) -> Send[Any]:
        return lambda gate, on_sent: self.client.query_zns_status(sms_id, sms_type, gate, on_sent)

    def _delivery_request(self, oa_id: str, message_id: str) -> Send[Any]:
        return lambda gate, on_sent: self.client.zalo_message_status(
            oa_id, message_id, gate, on_sent
        )

    @cached_property
    def inbox(self) -> PushInbox:
        return PushInbox(self.redis, self.keys)

    @cached_property
    def breaker(self) -> Breaker:
        """GetCallback's breaker."""
        return self.breaker_of(CALLBACK)

    @cached_property
    def pause(self) -> AccountPause:
        return AccountPause(self.redis, self.keys.paused, self.keys.health)

    @cached_property
    def stats(self) -> RequestStats:
        return RequestStats(self.redis, self.keys)

    @cached_property
    def drainer_slots(self) -> LeaseSemaphore:
        lease_s = self.settings.drainer_lease_s(self.terms)
        return LeaseSemaphore(self.redis, self.keys.drainers, lease_s=lease_s)

    @cached_property
    def dispatch(self) -> DrainerDispatch:
        return DrainerDispatch(
            self.redis,
            self.keys,
            self.settings,
            self.account,
            self.backlog,
            self.drainer_slots,
            self.drainers_wanted,
            self._queue_drain_task,
            self.takes_turns,
        )

    def _queue_drain_task(self, queued_as: str) -> object:
        if self.queue_drain is None:
            raise RuntimeError("this process queues no drain tasks: it is not a worker")
        return self.queue_drain(queued_as)

    def drainers_wanted(self) -> int:
        """How many drainers the account should have now (see Settings.drainers_wanted)."""
        return self.settings.drainers_wanted(self.terms, self.stats.request_time_s())

    @property
    def lease_s(self) -> float:
        """How long a request (or a push's apply) holds its RefIds (Settings.lease_s)."""
        return self.settings.lease_s(self.terms)

    @cached_property
    def client(self) -> EsmsClient:
        from esms_callbacks.esms.client import EsmsClient

        secrets = self.account.secrets
        return EsmsClient(
            self.terms.base_url,
            secrets.api_key,
            secrets.secret_key,
            self.settings.http_timeout_s,
            rest_base_url=self.terms.rest_base_url,
        )

    @property
    def publisher(self) -> EventPublisher:
        return self.shared.publisher

    @cached_property
    def state_fence(self) -> ReplicaFence:
        """Confirms this process's writes to the project's Redis with its replicas."""
        s = self.settings
        return ReplicaFence(
            self.redis,
            self.keys.fence,
            s.redis_replicas,
            s.redis_replica_timeout_s,
            on_not_durable=self.stats.count_not_durable,
        )

    @cached_property
    def broker_fence(self) -> ReplicaFence:
        """Confirms the events this process published with the broker's replicas (a Redis
        broker; with another one, or none asked for, it confirms nothing)."""
        s = self.settings
        client = self.shared.broker_redis if s.redis_replicas else None
        if client is None:
            return ReplicaFence(self.redis, self.keys.fence, 0, s.redis_replica_timeout_s)
        return ReplicaFence(
            client,
            self.keys.fence,
            s.redis_replicas,
            s.redis_replica_timeout_s,
            on_not_durable=self.stats.count_not_durable,  # in the project's Redis
        )

    def publish_durably(self, events: list[dict[str, Any]]) -> None:
        """Publish `events` once the states recorded for them are on the replicas, and return
        once the events are too: only then may their RefIds be settled (NotDurable else)."""
        if not events:
            return
        self.state_fence.confirm()
        try:
            self.publisher.publish(events)
        except PublishFailed as exc:
            if exc.published:  # what went out is settled only once it is confirmed too
                try:
                    self.broker_fence.confirm()
                except NotDurable:
                    raise PublishFailed(0, len(events), "its replicas did not confirm") from exc
            raise
        self.broker_fence.confirm()

    def ask(
        self,
        ref_ids: list[str],
        oa_id: str,
        gate: Callable[[], bool],
        on_sent: Callable[[], None] | None = None,
    ) -> CallbackAnswer:
        from esms_callbacks.engine.bridge import run_sync

        # No overall timeout here: the gate may wait out a slot; the client's own HTTP
        # timeout bounds the request itself.
        return run_sync(self.client.get_callback(ref_ids, oa_id, gate, on_sent))

    def close(self) -> None:
        """Close the HTTP session (if one was opened) on this process's loop."""
        if "client" in self.__dict__:
            from esms_callbacks.engine.bridge import run_sync

            run_sync(self.client.close(), timeout_s=5)

    def drainer(self) -> Drainer:
        return Drainer(
            self.settings,
            self.account,
            self.backlog,
            self.limiter,
            self.breaker,
            self.pause,
            self.stats,
            self.ask,
            self.publish_durably,
            self.clock,
            message_asks=self.message_asks if self._asks_messages else None,
            notes=self.notes,
        )

    @property
    def _asks_messages(self) -> bool:
        return self.terms.query_status != QUERY_OFF or self.terms.track_delivery


class Runtimes:
    """The Runtime of every account this process serves, built when first asked for and
    built again when its settings change (the accounts file read again: a rotated secret, new
    terms); an account removed from the file is no longer served.

    A Runtime replaced or removed is closed RETIRED_CLOSE_AFTER_S later, not at once: in a
    threads pool another task may still be inside a request on its HTTP session (a drain
    notices the change at its next step and stops)."""

    def __init__(
        self,
        book: AccountBook,
        queue_drain: Callable[[str, str], object] | None = None,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self.book = book
        self.shared = SharedClients(book.settings)
        self._queue_drain = queue_drain
        self._monotonic_s = monotonic_s
        self._built: dict[str, Runtime] = {}
        self._retired: list[tuple[float, Runtime]] = []  # (when retired, the Runtime)

    def get(self, name: str) -> Runtime:
        """The account's Runtime; AccountNotServed if this deployment does not serve it,
        AccountUnavailable if it cannot here now (AccountBook.get)."""
        account = self.book.get(name)
        self._close_retired()
        built = self._built.get(name)
        if built is not None and built.account == account:
            return built
        if built is not None:
            self._retire(built)
        queue = self._queue_drain
        runtime = Runtime(
            self.shared.settings,
            account,
            queue_drain=None if queue is None else (lambda queued_as: queue(name, queued_as)),
            shared=self.shared,
            takes_turns=lambda: len(self.book.accounts()) > 1,
        )
        if built is not None and _keys_of(built.account) != _keys_of(account):
            runtime.pause.lift()  # a pause for the old keys' refusal: the new ones get a try
        self._built[name] = runtime
        return runtime

    def default(self) -> Runtime:
        """The `default` account's (the only one without an accounts file)."""
        return self.get(DEFAULT_ACCOUNT)

    def names(self) -> list[str]:
        return sorted(self.book.accounts())

    def all(self) -> list[Runtime]:
        """Every account's Runtime, in name order; those of removed accounts retired."""
        accounts = self.book.accounts()
        for name in set(self._built) - set(accounts):
            self._retire(self._built.pop(name))
        return [self.get(name) for name in sorted(accounts)]

    def close(self) -> None:
        """Close every Runtime, retired ones included (the process is stopping)."""
        for runtime in [*self._built.values(), *(runtime for _, runtime in self._retired)]:
            runtime.close()
        self._built.clear()
        self._retired.clear()

    def _retire(self, runtime: Runtime) -> None:
        self._retired.append((self._monotonic_s(), runtime))

    def _close_retired(self) -> None:
        now_s = self._monotonic_s()
        while self._retired and now_s - self._retired[0][0] >= RETIRED_CLOSE_AFTER_S:
            self._retired.pop(0)[1].close()


def _keys_of(account: Account) -> tuple[str, str]:
    return account.secrets.api_key, account.secrets.secret_key
