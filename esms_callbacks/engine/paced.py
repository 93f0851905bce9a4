"""Requests of one message each (QueryZnsStatus, GetZaloMessageStatus), sent at their
endpoint's rate with many in flight.

At 100 requests a second the spacing is 10 ms, shorter than a request takes: waiting for each
answer before the next would cap the rate at one over the round trip. So one thread walks the
requests: it reserves each one's slot (the endpoint's own limiter, shared by every process
and host), sleeps until it, and hands the request to the process's event loop, whose gate
commits the slot right before the bytes are written, as GetCallback's does (engine.drainer);
the answers are gathered once every request has left. Nothing is sent early: the commit
decides, on the Redis clock, as for GetCallback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis

from esms_callbacks.engine.bridge import process_loop
from esms_callbacks.engine.clock import Clock
from esms_callbacks.engine.limiter import Commit, RateLimiter
from esms_callbacks.errors import NotSent
from esms_callbacks.tuning import WAKE_EARLY_SHARE

log = logging.getLogger(__name__)
GATE_WAIT_MOST_S = 30.0

T = TypeVar("T")
K = TypeVar("K")
# One request: given its gate and on_sent, the coroutine that sends it (the client's method).
Send = Callable[[Callable[[], bool], Callable[[], None]], Awaitable[T]]


@dataclass(frozen=True)
class Answered(Generic[T]):
    value: T | None = None
    error: Exception | None = None  # an EsmsError, or NotSent when it never left


class PacedSender:
    """Send one endpoint's requests at its limiter's pace, several in flight."""

    def __init__(
        self,
        limiter: RateLimiter,
        spacing_s: float,
        clock: Clock,
        run_on_loop: Callable[[Awaitable[Any]], Future[Any]] | None = None,
    ) -> None:
        self._limiter = limiter
        self._spacing_s = spacing_s
        self._clock = clock
        self._submit = run_on_loop or _on_process_loop

    @property
    def limiter(self) -> RateLimiter:
        return self._limiter

    def send_all(
        self,
        requests: Sequence[tuple[K, Send[T]]],
        window_s: tuple[float, float] | None,
    ) -> dict[K, Answered[T]]:
        """Send each request at its slot; return each one's answer or error. Once a slot
        cannot be had (the window closes before it, the account is paused, the endpoint's
        breaker is open), the requests left are NotSent."""
        in_flight: list[tuple[K, Future[T]]] = []
        answers: dict[K, Answered[T]] = {}
        stopped = ""
        previous: _Gate | None = None
        for key, send in requests:
            if stopped:
                answers[key] = Answered(error=NotSent(stopped))
                continue
            # The next slot is reserved, and slept toward, while the request before leaves:
            # its commit and its mark are off the path from one slot to the next.
            wait_s = self._limiter.reserve(not_after_s=window_s[1] if window_s else None)
            if wait_s is None:
                stopped = "the window closes before the next slot"
                answers[key] = Answered(error=NotSent(stopped))
                continue
            self._clock.sleep(wait_s - min(wait_s, self._spacing_s * WAKE_EARLY_SHARE))
            # The gates run on the loop: the one before must have left (or not) first, so
            # requests leave in order and a refusal stops the rest (bounded: a request that
            # cannot even connect is the client's timeout's business).
            if previous is not None:
                previous.left.wait(timeout=GATE_WAIT_MOST_S)
                stopped = previous.refused
                if stopped:
                    self._limiter.hand_back()  # this slot goes unused
                    answers[key] = Answered(error=NotSent(stopped))
                    continue
            gate = _Gate(self._limiter, self._clock, window_s)
            future: Future[T] = self._submit(send(gate.open, gate.on_sent))
            future.add_done_callback(gate.done)  # it failed before its gate, if not set yet
            in_flight.append((key, future))
            previous = gate
        for key, future in in_flight:
            try:
                answers[key] = Answered(value=future.result())
            except Exception as exc:  # the request's own error: the caller decides
                answers[key] = Answered(error=exc)
        return answers


class _Gate:
    """One request's gate: commit its slot right before it is written (engine.drainer)."""

    def __init__(
        self, limiter: RateLimiter, clock: Clock, window_s: tuple[float, float] | None
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._window_s = window_s
        self._commit: Commit | None = None
        self.refused = ""
        self.left = threading.Event()  # set once the gate opened or refused

    def open(self) -> bool:
        try:
            while True:
                commit = self._limiter.commit(self._window_s)
                if commit.go:
                    self._commit = commit
                    self._clock.sleep_exactly(commit.wait_s)
                    return True
                if commit.refused:
                    self.refused = commit.refused
                    return False
                self._clock.sleep(commit.wait_s)
        finally:
            if self._commit is None:
                self.left.set()

    def done(self, _: object) -> None:
        self.left.set()

    def on_sent(self) -> None:
        try:
            if self._commit is not None:
                self._limiter.mark_sent(self._commit.at_us)
        except redis.RedisError as exc:  # the commit's time stands; the margin covers it
            log.warning("could not record when a request left: %s", exc)
        finally:
            self.left.set()


def _on_process_loop(coro: Awaitable[Any]) -> Future[Any]:
    async def run() -> Any:
        return await coro

    return asyncio.run_coroutine_threadsafe(run(), process_loop().loop)
