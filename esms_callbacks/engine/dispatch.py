"""Starting drainers: queue drain tasks up to the number wanted, and warn when the backlog
exceeds what the coming window can carry.

Keys: `spawn-lock` (a string with a one-second TTL: someone just asked for drainers, so the
many producers of a burst ask once) and `capacity-warned` (a string with a TTL: the capacity
warning was logged, so it is logged at most every CAPACITY_WARNING_EVERY_S), `stopping:HOST`
(a worker's warm shutdown began: its drains give their places up at their next step). The
drainers' places are engine.semaphore's.

Turns: the worker pool is shared by every account of a deployment. An account asked drains
for waits in `drains-waiting` (one sorted set for the deployment, scored by when it began
waiting) until a drain of it starts. A drain that has had FAIR_TURN_S while others wait gives
its account's place up (the account waits again, at the back, if it has work left) and, in
the same task, takes the account that has waited longest: the order of turns lives in Redis,
not in the broker's queue, where drain tasks expire (DRAIN_EXPIRES_S) when the pool is busy.
The drain tasks queued and not yet started are counted per account (`drains-queued`), so
beat's pulses do not pile them up. With fewer pool slots than accounts, every account gets
its turn in the order it began waiting; with enough, nobody waits and no drain stops early.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import redis

from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.capacity import coming_window, describe_shortfall
from esms_callbacks.engine.keys import DRAINS_WAITING, AccountKeys
from esms_callbacks.engine.semaphore import LeaseSemaphore
from esms_callbacks.settings import Settings
from esms_callbacks.terms import Terms
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
        terms: Terms,
        name: str,
        backlog: Backlog,
        slots: LeaseSemaphore,
        wanted: Callable[[], int],
        queue_drain: Callable[[str], object],
        takes_turns: Callable[[], bool] = lambda: False,
    ) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self._terms = terms
        self._name = name  # the account's, as the turns list names it
        self._backlog = backlog
        self._slots = slots
        self._wanted = wanted
        self._queue_drain = queue_drain
        # Whether the pool is shared with other accounts of the deployment (more than one in
        # its accounts file): a single account never waits for a turn, nor yields one.
        self.takes_turns = takes_turns

    def request(self, now_s: float, force: bool = False) -> int:
        """Queue drain tasks up to the number of drainers wanted, counting those queued and
        not yet started (until they expire unrun); return how many. Unless `force`d (a drain
        that used its budget asks for its successor), at most one asking per second goes
        through. The account then waits for a turn (`drains-waiting`) until one starts."""
        if not force and not self._redis.set(self._keys.spawn_lock, 1, nx=True, px=SPAWN_LOCK_MS):
            return 0
        now_ms = int(now_s * 1000)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self._keys.drains_queued, "-inf", now_ms)
        pipe.zcard(self._keys.drains_queued)
        pipe.zscore(DRAINS_WAITING, self._name)
        _, queued, waiting_since = pipe.execute()
        holders = self._slots.holders(now_s)
        missing = self._wanted() - holders - int(queued)
        if waiting_since is not None:
            # Still waiting for a turn: the pool is busy. One task queued is enough to start
            # it should the pool free up; the turns hand it a drain otherwise.
            missing = min(missing, 1 - int(queued))
        ids = [uuid.uuid4().hex for _ in range(max(0, missing))]
        if not ids:
            return 0
        expires_ms = now_ms + int(DRAIN_EXPIRES_S * 1000)
        self._redis.zadd(self._keys.drains_queued, dict.fromkeys(ids, expires_ms))
        if holders == 0 and self.takes_turns():  # served by none: it waits for a turn
            self._redis.zadd(DRAINS_WAITING, {self._name: now_ms}, nx=True)
        for queued_as in ids:
            self._queue_drain(queued_as)
        return len(ids)

    def drain_started(self, queued_as: str) -> None:
        """A drain of this account started (its own, or one handed over): it is served, no
        longer waiting for a turn."""
        pipe = self._redis.pipeline(transaction=False)
        if queued_as:
            pipe.zrem(self._keys.drains_queued, queued_as)
        pipe.zrem(DRAINS_WAITING, self._name)
        pipe.execute()

    def wait_for_turn(self, now_s: float) -> None:
        """This account gave its last place up with work left: it waits behind those
        waiting (while another of its drainers runs, it is served)."""
        if self._slots.holders(now_s) == 0:
            self._redis.zadd(DRAINS_WAITING, {self._name: int(now_s * 1000)}, nx=True)

    def others_waiting(self) -> bool:
        """Whether another account waits for a turn on the worker pool."""
        if not self.takes_turns():
            return False
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcard(DRAINS_WAITING)
        pipe.zscore(DRAINS_WAITING, self._name)
        waiting, own = pipe.execute()
        return int(waiting) - (own is not None) > 0

    def check_capacity(self, now_s: float) -> None:
        """Warn (at most every ten minutes) when the backlog exceeds the coming window."""
        waiting = self._backlog.waiting_total()  # one read, however many OAs
        capacity = coming_window(self._settings, self._terms, now_s)
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


def next_waiting(client: redis.Redis) -> tuple[str, float] | None:
    """The account (its name) that has waited longest for a turn, taken off the list,
    with when it began waiting (ms); None when none waits."""
    popped: list[tuple[bytes, float]] = client.zpopmin(DRAINS_WAITING)  # type: ignore[assignment]
    if not popped:
        return None
    account_id, since_ms = popped[0]
    return account_id.decode(), float(since_ms)


def wait_again(client: redis.Redis, name: str, since_ms: float) -> None:
    """Put an account taken off the list back where it was (it cannot be served here)."""
    client.zadd(DRAINS_WAITING, {name: since_ms}, nx=True)
