"""Starting drainers: queue drain tasks up to the number wanted, and warn when the backlog
exceeds what the coming window can carry.

Keys: `spawn-lock` (a string with a one-second TTL: someone just asked for drainers, so the
many producers of a burst ask once) and `capacity-warned` (a string with a TTL: the capacity
warning was logged, so it is logged at most every CAPACITY_WARNING_EVERY_S), `stopping:HOST`
(a worker's warm shutdown began: its drains give their places up at their next step). The
drainers' places are engine.semaphore's.

Turns: the worker pool is shared by every account of a deployment. An account whose drain
task is queued and not yet started waits in `drains-waiting` (one sorted set for the
deployment, scored by when it was asked for); a drain that has had FAIR_TURN_S while others
wait gives its place up and queues its successor behind them. With fewer pool slots than
accounts, every account gets its turn in the order asked; with enough, nobody waits and no
drain stops early.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.capacity import coming_window, describe_shortfall
from esms_callbacks.engine.keys import DRAINS_WAITING, AccountKeys
from esms_callbacks.engine.semaphore import LeaseSemaphore
from esms_callbacks.settings import Settings
from esms_callbacks.tuning import (
    CAPACITY_WARNING_EVERY_S,
    DRAIN_EXPIRES_S,
    SPAWN_LOCK_MS,
    STOPPING_FLAG_S,
)

log = logging.getLogger(__name__)


class DrainerDispatch:
    """`queue_drain()` queues one drain task (tasks/drain.py says how: workers/ does not
    import tasks/); `wanted()` is how many drainers the account should have now."""

    def __init__(
        self,
        client: redis.Redis,
        keys: AccountKeys,
        settings: Settings,
        backlog: Backlog,
        slots: LeaseSemaphore,
        wanted: Callable[[], int],
        queue_drain: Callable[[], object],
    ) -> None:
        self._redis = client
        self._keys = keys
        self._settings = settings
        self._backlog = backlog
        self._slots = slots
        self._wanted = wanted
        self._queue_drain = queue_drain

    def request(self, now_s: float, force: bool = False) -> int:
        """Queue drain tasks up to the number of drainers wanted; return how many. Unless
        `force`d (a drain that used its budget asks for its successor), at most one asking
        per second goes through."""
        if not force and not self._redis.set(self._keys.spawn_lock, 1, nx=True, px=SPAWN_LOCK_MS):
            return 0
        missing = self._wanted() - self._slots.holders(now_s)
        for _ in range(max(0, missing)):
            self._queue_drain()
        if missing > 0:
            self._redis.zadd(DRAINS_WAITING, {self._keys.prefix: int(now_s * 1000)})
        return max(0, missing)

    def drain_started(self) -> None:
        """This account's drain is running: it no longer waits for a turn."""
        self._redis.zrem(DRAINS_WAITING, self._keys.prefix)

    def others_waiting(self, now_s: float) -> bool:
        """Whether another account's drain waits for a place in the pool (one asked for
        within DRAIN_EXPIRES_S: an older one expired unrun)."""
        since_ms = int((now_s - DRAIN_EXPIRES_S) * 1000)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zcount(DRAINS_WAITING, since_ms, "+inf")
        pipe.zscore(DRAINS_WAITING, self._keys.prefix)
        waiting, own_ms = pipe.execute()
        own = 1 if own_ms is not None and own_ms >= since_ms else 0
        return int(waiting) - own > 0

    def check_capacity(self, now_s: float) -> None:
        """Warn (at most every ten minutes) when the backlog exceeds the coming window."""
        waiting = self._backlog.waiting_total()  # one read, however many OAs
        capacity = coming_window(self._settings, now_s)
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
