"""Deliver pushes to CallbackUrls as eSMS does: GET with the status as query parameters,
retried when the customer's server fails, then dropped.

A batch (one `Pusher.queue` call) waits `delay_s`, then starts its deliveries in order, at most
`rate_per_s` a second (0: unpaced); at most `max_in_flight` requests are open at once over all
batches. A delivery is done when answered 200. Any other status, a timeout or a connection
error is retried after `retry_delay_s`, at most `retries` more times, then given up. Retries
take their turn from their batch's pace like first attempts.

The Pusher lives on the simulator's event loop: call it from there (the /_sim handlers do).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

DEFAULT_MAX_IN_FLIGHT = 20


@dataclass(frozen=True)
class PushSettings:
    """How each delivery is tried; checked on creation (ValueError naming the field)."""

    timeout_s: float = 5.0  # one attempt, connect to last byte
    retries: int = 5  # attempts after the first; eSMS's documented count
    retry_delay_s: float = 2.0  # between a failed attempt and the next

    def __post_init__(self) -> None:
        if not _is_number(self.timeout_s) or self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be a number of seconds > 0, not {self.timeout_s!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an integer >= 0, not {self.retries!r}")
        if not _is_number(self.retry_delay_s) or self.retry_delay_s < 0:
            raise ValueError(
                f"retry_delay_s must be a number of seconds >= 0, not {self.retry_delay_s!r}"
            )

    def changed(self, **changes: object) -> PushSettings:
        """Return these settings with `changes` applied; raise ValueError on an unknown name."""
        names = set(asdict(self))
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown push setting(s) {sorted(unknown)}; use {sorted(names)}")
        return replace(self, **changes)  # type: ignore[arg-type]  # checked by __post_init__

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Tally:
    queued: int = 0
    attempts: int = 0
    delivered: int = 0
    retried: int = 0
    given_up: int = 0
    in_flight: int = 0
    answers: Counter[str] = field(default_factory=Counter)  # HTTP status, or "error"

    def to_json(self) -> dict[str, object]:
        counts: dict[str, object] = {
            name: value for name, value in asdict(self).items() if name != "answers"
        }
        counts["waiting"] = self.queued - self.delivered - self.given_up
        counts["answers"] = dict(self.answers)
        return counts


class _Generation:
    """Everything `Pusher.reset` throws away; tasks it cancels may still touch their own."""

    def __init__(self, max_in_flight: int) -> None:
        self.tally = _Tally()
        self.slots = asyncio.Semaphore(max_in_flight)
        self.tasks: set[asyncio.Task[None]] = set()


class _Pacer:
    """Hand out turns at most `rate_per_s` a second, in the order asked; 0 never waits."""

    def __init__(self, rate_per_s: float) -> None:
        self._interval_s = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        self._next_turn_s = 0.0  # time.monotonic()

    async def turn(self) -> None:
        if not self._interval_s:
            return
        now_s = time.monotonic()
        # The slot is taken before sleeping, so callers queue up in order.
        turn_s = max(now_s, self._next_turn_s)
        self._next_turn_s = turn_s + self._interval_s
        await asyncio.sleep(turn_s - now_s)


class Pusher:
    """A queue of pushes delivered on the simulator's event loop with one HTTP session."""

    def __init__(
        self, settings: PushSettings | None = None, *, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    ) -> None:
        self.settings = settings or PushSettings()  # read at each attempt: changes apply now
        self._max_in_flight = max_in_flight
        self._generation = _Generation(max_in_flight)
        self._session: aiohttp.ClientSession | None = None

    async def session_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: open the session at startup, cancel pushes and close it
        at cleanup."""
        # trust_env off: pushes go straight to the URL asked, never through an env proxy.
        self._session = aiohttp.ClientSession(trust_env=False)
        try:
            yield
        finally:
            tasks = list(self._generation.tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._session.close()
            self._session = None

    def queue(
        self,
        url: URL,
        params: Sequence[dict[str, str]],
        *,
        delay_s: float = 0.0,
        rate_per_s: float = 0.0,
    ) -> int:
        """Queue one push to `url` per entry of `params` (added to its query); return how many."""
        if self._session is None:
            raise RuntimeError("the pusher is not running: serve the app first")
        generation = self._generation
        generation.tally.queued += len(params)
        urls = [url.extend_query(one) for one in params]
        self._spawn(generation, self._feed(generation, urls, delay_s, _Pacer(rate_per_s)))
        return len(urls)

    def counts(self) -> dict[str, object]:
        """queued, attempts, delivered, retried, given_up, in_flight, waiting and answers."""
        return self._generation.tally.to_json()

    def reset(self) -> None:
        """Drop every queued push and zero the counts; settings are kept."""
        for task in self._generation.tasks:
            task.cancel()
        self._generation = _Generation(self._max_in_flight)

    def _spawn(self, generation: _Generation, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        generation.tasks.add(task)  # a reference, so the task is not collected mid-flight
        task.add_done_callback(generation.tasks.discard)

    async def _feed(
        self, generation: _Generation, urls: list[URL], delay_s: float, pacer: _Pacer
    ) -> None:
        await asyncio.sleep(delay_s)
        for url in urls:
            await self._take_turn(generation, pacer)
            self._spawn(generation, self._deliver(generation, url, pacer))

    async def _take_turn(self, generation: _Generation, pacer: _Pacer) -> None:
        # Pace first: a batch waiting for its turn must not hold slots other batches could use.
        await pacer.turn()
        await generation.slots.acquire()

    async def _deliver(self, generation: _Generation, url: URL, pacer: _Pacer) -> None:
        """Try `url` until answered 200 or out of retries; a slot is held on entry."""
        tally, failures = generation.tally, 0
        while True:
            try:
                delivered = await self._attempt(tally, url)
            finally:
                generation.slots.release()
            if delivered:
                tally.delivered += 1
                return
            failures += 1
            if failures > self.settings.retries:
                tally.given_up += 1
                return
            tally.retried += 1
            await asyncio.sleep(self.settings.retry_delay_s)
            await self._take_turn(generation, pacer)

    async def _attempt(self, tally: _Tally, url: URL) -> bool:
        assert self._session is not None  # tasks are cancelled before the session closes
        tally.attempts += 1
        tally.in_flight += 1
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        try:
            async with self._session.get(url, timeout=timeout) as response:
                await response.read()  # a whole answer, so the connection can be reused
                answer = str(response.status)
        except (aiohttp.ClientError, TimeoutError):
            answer = "error"
        finally:
            tally.in_flight -= 1
        tally.answers[answer] += 1
        return answer == "200"


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


PUSHER_KEY = web.AppKey("pusher", Pusher)
