"""Starting drainers: queue drain tasks up to the number wanted, and warn when the backlog
exceeds what the coming window can carry.

Keys: `spawn-lock` (a string with a one-second TTL: someone just asked for drainers, so the
many producers of a burst ask once) and `capacity-warned` (a string with a TTL: the capacity
warning was logged, so it is logged at most every CAPACITY_WARNING_EVERY_S), `stopping:HOST`
(a worker's warm shutdown began: its drains give their places up at their next step). The
drainers' places are engine.semaphore's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis

from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.capacity import coming_window, describe_shortfall
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.semaphore import LeaseSemaphore
from esms_callbacks.settings import Settings
from esms_callbacks.tuning import CAPACITY_WARNING_EVERY_S, SPAWN_LOCK_MS, STOPPING_FLAG_S

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
        return max(0, missing)

    def check_capacity(self, now_s: float) -> None:
        """Warn (at most every ten minutes) when the backlog exceeds the coming window."""
        waiting = sum(oa.waiting + oa.leased for oa in self._backlog.per_oa(now_s))
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
