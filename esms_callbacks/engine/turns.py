"""Turns on the worker pool that a deployment's accounts share.

A drain holds one of its account's drainer places (engine.semaphore) for its turn:

    with turns.acquire(runtime.dispatch, runtime.clock, hostname) as turn:
        if turn is not None:
            drainer.drain(budget_s, keep_going=turn.keep_going)

While another account waits (engine.waiting), a drainer beside others of its own account
yields its place at its next step, and an account's last drainer after `fair_turn_s`
(FAIR_TURN_S); its account then waits again, at the back. A drain task serves the account
that has waited longest (`next_waiting`), its own if none waits, and goes on with the next
one when a turn ends (over, or its account's work done) within its budget: the order of turns
lives in Redis, not in the broker's queue, where drain tasks expire (DRAIN_EXPIRES_S) while
the pool is busy. Only the accounts this deployment serves count as waiting, and only while
its pulses renew their wait: an entry of an account removed from the file, renamed, or of
another deployment on the same Redis neither takes a turn from a running account nor stops a
hand-over. With one account, or pool slots for every drainer wanted, nobody waits and no
drain stops early.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager, suppress

import redis
from redis.exceptions import RedisError

from esms_callbacks.engine.clock import Clock
from esms_callbacks.engine.dispatch import DrainerDispatch
from esms_callbacks.engine.waiting import WaitingList
from esms_callbacks.tuning import FAIR_TURN_S, WAITING_STALE_S


class Turns:
    """One process's view of its deployment's turns. `served()` names the accounts the
    deployment serves (its accounts file's tables)."""

    def __init__(
        self,
        client: redis.Redis,
        served: Callable[[], Collection[str]],
        fair_turn_s: float = FAIR_TURN_S,
        stale_after_s: float = WAITING_STALE_S,
    ) -> None:
        self.waiting = WaitingList(client, stale_after_s)
        self._served = served
        self.fair_turn_s = fair_turn_s

    @contextmanager
    def acquire(
        self,
        dispatch: DrainerDispatch,
        clock: Clock,
        hostname: str,
        still_current: Callable[[], bool] = lambda: True,
    ) -> Iterator[Turn | None]:
        """Take a drainer place for `dispatch`'s account on worker `hostname`. Yield its
        Turn, or None when the account's places are all held or this worker is stopping;
        give the place back on leaving. A turn that was over puts its account back on the
        waiting list, at the back. `still_current()` says whether the account's settings
        are still those the drain runs on."""
        dispatch.drain_started()  # served now, whether or not a place is free
        stopping_key, wanted = dispatch.stopping_key(hostname), dispatch.wanted()
        token = dispatch.slots.acquire(clock.now_s(), wanted, stopping_key=stopping_key)
        if token is None:
            yield None
            return
        turn = Turn(self, dispatch, clock, token, wanted, stopping_key, still_current)
        try:
            yield turn
        finally:
            with suppress(RedisError):  # unreachable Redis: the place frees itself at its lease
                dispatch.slots.release(token)
        if turn.over:  # work is left (an error leaves it to the task's retry)
            dispatch.wait_for_turn(clock.now_s())

    def renew(self, now_s: float) -> None:
        """The deployment's pulse: the waits of the accounts it serves still count."""
        served = self._served()
        if len(served) > 1:
            self.waiting.renew(list(served), now_s)

    def others_waiting(self, name: str, now_s: float) -> bool:
        """Whether an account this deployment serves, other than `name`, waits for a turn."""
        served = self._served()
        if len(served) < 2:  # a single account never waits nor yields
            return False
        return any(other != name and other in served for other in self.waiting.in_order(now_s))

    def next_waiting(self, now_s: float) -> str | None:
        """Take off the list the account this deployment serves that has waited longest, and
        return its name; None when none waits. Others' entries keep their places (another
        deployment's) until they are stale."""
        served = self._served()
        if len(served) < 2:
            return None
        for name in self.waiting.in_order(now_s):
            if name in served and self.waiting.leave(name):
                return name
        return None


class Turn:
    """One account's turn: a drainer place, renewed at every step of the drain."""

    def __init__(
        self,
        turns: Turns,
        dispatch: DrainerDispatch,
        clock: Clock,
        token: str,
        wanted: int,
        stopping_key: str,
        still_current: Callable[[], bool],
    ) -> None:
        self._turns = turns
        self._dispatch = dispatch
        self._clock = clock
        self._token = token
        self._wanted = wanted
        self._stopping_key = stopping_key
        self._still_current = still_current
        self.started_s = clock.now_s()
        self.over = False  # given up for another account waiting
        self.lost = False  # its place lost: this worker is stopping (or the lease ran out)

    def keep_going(self) -> bool:
        """Keep the place, unless this worker is stopping, the account's settings changed (a
        rotated key: the next drain uses the new one) or another account's turn came."""
        now_s = self._clock.now_s()
        slots = self._dispatch.slots
        if slots.acquire(now_s, self._wanted, self._token, self._stopping_key) is None:
            self.lost = True
            return False
        if not self._still_current():
            return False
        self.over = self._yields(now_s)
        return not self.over

    def _yields(self, now_s: float) -> bool:
        """Another account waits, and this turn has lasted `fair_turn_s` or its account has
        other drainers running (it keeps one)."""
        young = now_s - self.started_s < self._turns.fair_turn_s
        if young and self._dispatch.slots.holders(now_s) < 2:
            return False
        return self._turns.others_waiting(self._dispatch.name, now_s)
