"""The turns' waiting list: a deployment's accounts waiting for a place on the worker pool,
in the order they began waiting, each named by the account's name.

An account joins when it is asked drains for with none running (engine.dispatch), and leaves
when a drain of it starts or a hand-over claims it (engine.turns). Its deployment's pulses
renew the waits of the accounts it serves (beat's esms.release, every ESMS_RELEASE_EVERY); a
wait not renewed for WAITING_STALE_S is dropped, so that an entry nobody serves any more (an
account removed from the file or renamed, a deployment stopped) does not stay for ever.
Whether an entry counts is for the reader to say: only the accounts its deployment serves
(engine.turns).

Keys (engine.keys): TURNS_WAITING (name -> when it began waiting, ms) and TURNS_RENEWED
(name -> when its wait was last renewed, ms), always holding the same names: the scripts that
add or remove a name change both.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import redis

from esms_callbacks.engine.keys import TURNS_RENEWED, TURNS_WAITING
from esms_callbacks.engine.scripts import register_file
from esms_callbacks.tuning import WAITING_PAGE, WAITING_RENEW_CHUNK, WAITING_STALE_S

KEYS = [TURNS_WAITING, TURNS_RENEWED]


class WaitingList:
    def __init__(self, client: redis.Redis, stale_after_s: float = WAITING_STALE_S) -> None:
        self._redis = client
        self._stale_after_ms = int(stale_after_s * 1000)
        self._join = register_file(client, "turns_join")
        self._leave = register_file(client, "turns_leave")
        self._head = register_file(client, "turns_head")

    def join(self, name: str, now_s: float) -> float:
        """Wait at the back, unless `name` waits already; either way its wait is renewed.
        Return when it began waiting (ms)."""
        return float(self._join(keys=KEYS, args=[ms(now_s), name]))

    def queue_since(self, pipe: redis.client.Pipeline, name: str) -> None:
        """Queue on `pipe` the read of when `name` began waiting (ms; None if it does not)."""
        pipe.zscore(TURNS_WAITING, name)

    def renew(self, names: Sequence[str], now_s: float) -> None:
        """Renew the waits of those of `names` that wait (the two sets hold the same names:
        ZADD XX adds none)."""
        for first in range(0, len(names), WAITING_RENEW_CHUNK):
            chunk = names[first : first + WAITING_RENEW_CHUNK]
            self._redis.zadd(TURNS_RENEWED, dict.fromkeys(chunk, ms(now_s)), xx=True)

    def leave(self, name: str) -> bool:
        """Take `name` off the list; whether it was on it (of callers claiming it at once,
        one is told True)."""
        return bool(self._leave(keys=KEYS, args=[name]))

    def in_order(self, now_s: float, page: int = WAITING_PAGE) -> Iterator[str]:
        """The names waiting, longest first, read `page` at a time as the caller goes on;
        waits not renewed for WAITING_STALE_S are dropped first."""
        stale_before_ms = ms(now_s) - self._stale_after_ms
        first = 0
        while True:
            names = self._head(keys=KEYS, args=[stale_before_ms, first, page, page])
            yield from (name.decode() for name in names)
            if len(names) < page:
                return
            first += page


def ms(now_s: float) -> int:
    return int(now_s * 1000)
