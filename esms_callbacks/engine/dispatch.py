"""Starting drainers: queue drain tasks up to the number wanted, and warn when the backlog
exceeds what the coming window can carry.

Keys: `spawn-lock` (a string with a one-second TTL: someone just asked for drainers, so the
many producers of a burst ask once) and `capacity-warned` (a string with a TTL: the capacity
warning was logged, so it is logged at most every CAPACITY_WARNING_EVERY_S), `stopping:HOST`
(a worker's warm shutdown began: its drains give their places up at their next step). The
drainers' places are engine.semaphore's.

Turns: the worker pool is shared by every account of a deployment. An account asked drains
for, with none running, waits for a turn on the waiting list (engine.waiting, by its name)
until a drain of it starts. The drain tasks queued and not yet
started are counted per account (`drains-queued`), so beat's pulses do not pile them up.
Who yields a turn to whom is engine.turns'.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import redis

from esms_callbacks.accounts import Account
from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.capacity import coming_window, describe_shortfall
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.semaphore import LeaseSemaphore
from esms_callbacks.engine.waiting import WaitingList
from esms_callbacks.settings import Settings
from esms_callbacks.tuning import (
    CAPACITY_WARNING_EVERY_S,
    DRAIN_EXPIRES_S,
    SPAWN_LOCK_MS,
    STOPPING_FLAG_S,
)

log = logging.getLogger(__name__)


class DrainerDispatch:
    """`queue_drain(queued_as)` queues one drain task (tasks/drain.py says how: the engine
    does not import tasks/) under an id it is counted by until it starts; `wanted()` is how
    many drainers the account should have now."""

    def __init__(
        self,
        client: redis.Redis,
        keys: AccountKeys,
        settings: Settings,
        account: Account,
        backlog: Backlog,
        slots: LeaseSemaphore,
        wanted: Callable[[], int],
        queue_drain: Callable[[str], object],
        takes_turns: Callable[[], bool] = lambda: False,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self._account = account
        self._backlog = backlog
        self.slots = slots  # the account's drainer places
        self.wanted = wanted
        self._waiting = WaitingList(client)
        self._queue_drain = queue_drain
        # Whether the pool is shared with other accounts of the deployment (more than one in
        # its accounts file): a single account never waits for a turn, nor yields one.
        self.takes_turns = takes_turns

    @property
    def name(self) -> str:
        """The account's name: how the waiting list names it."""
        return self._account.name

    def stopping_key(self, hostname: str) -> str:
        """The flag of `hostname`'s warm shutdown (see `worker_stopping`)."""
        return self._keys.stopping(hostname)

    def request(self, now_s: float, force: bool = False) -> int:
        """Queue drain tasks up to the number of drainers wanted, counting those queued and
        not yet started (until they expire unrun); return how many. Unless `force`d (a drain
        that used its budget asks for its successor), at most one asking per second goes
        through. An account that shares the pool and has no drainer running waits for a turn
        until one starts, with one task queued."""
        if not force and not self._redis.set(self._keys.spawn_lock, 1, nx=True, px=SPAWN_LOCK_MS):
            return 0
        now_ms = int(now_s * 1000)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self._keys.drains_queued, "-inf", now_ms)
        pipe.zcard(self._keys.drains_queued)
        self._waiting.queue_since(pipe, self.name)
        _, queued, waiting_since = pipe.execute()
        holders = self.slots.holders(now_s)
        missing = self.wanted() - holders - int(queued)
        if holders == 0 and self.takes_turns():
            if waiting_since is None:
                self._waiting.join(self.name, now_s)
            # One task queued is enough to start it should the pool free up (a drain task
            # serves the account waiting longest: engine/turns.py); the turns hand it a drain
            # otherwise. Its other drainers are asked for once it runs.
            missing = min(missing, 1 - int(queued))
        ids = [uuid.uuid4().hex for _ in range(max(0, missing))]
        if not ids:
            return 0
        expires_ms = now_ms + int(DRAIN_EXPIRES_S * 1000)
        self._redis.zadd(self._keys.drains_queued, dict.fromkeys(ids, expires_ms))
        for queued_as in ids:
            self._queue_drain(queued_as)
        return len(ids)

    def dequeue(self, queued_as: str) -> None:
        """The drain task queued as `queued_as` started: it counts as queued no longer."""
        if queued_as:
            self._redis.zrem(self._keys.drains_queued, queued_as)

    def drain_started(self) -> None:
        """A drain of this account started (its own task, or a turn handed over): it is
        served, no longer waiting for a turn."""
        self._waiting.leave(self.name)

    def wait_for_turn(self, now_s: float) -> None:
        """This account gave its last place up with work left: it waits behind those
        waiting (while another of its drainers runs, it is served)."""
        if self.slots.holders(now_s) == 0:
            self._waiting.join(self.name, now_s)

    def check_capacity(self, now_s: float) -> None:
        """Warn (at most every ten minutes) when the backlog exceeds the coming window."""
        waiting = self._backlog.waiting_total()  # one read, however many OAs
        capacity = coming_window(self._settings, self._account.terms, now_s)
        if capacity.fits(waiting):
            return
        if self._redis.set(self._keys.capacity_warned, 1, nx=True, ex=CAPACITY_WARNING_EVERY_S):
            log.warning(describe_shortfall(capacity, waiting))

    def worker_stopping(self, hostname: str) -> None:
        """A warm shutdown of `hostname` began (a deploy): its drains stop at their next step
        rather than run out their budget."""
        self._redis.set(self._keys.stopping(hostname), 1, ex=STOPPING_FLAG_S)

    def worker_started(self, hostname: str) -> None:
        """`hostname` serves (again: a worker restarted under the same name drains again)."""
        self._redis.delete(self._keys.stopping(hostname))
