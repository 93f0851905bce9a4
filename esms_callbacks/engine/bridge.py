"""Run asyncio code from the synchronous Celery worker: one event loop thread per process.

Prefork children inherit the parent's memory but not its threads, so the loop is keyed by pid
and made anew in each child on first use.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop running forever in a daemon thread; `run` submits and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="esms-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


_lock = threading.Lock()
_loops: dict[int, LoopThread] = {}


def process_loop() -> LoopThread:
    """Return this process's loop thread, starting it on first use."""
    pid = os.getpid()
    with _lock:
        loop = _loops.get(pid)
        if loop is None:
            _loops.clear()  # a forked child drops the parent's (threadless) entry
            loop = _loops[pid] = LoopThread()
        return loop


def run_sync(coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
    """Run `coro` on this process's loop and return its result."""
    return process_loop().run(coro, timeout_s)
