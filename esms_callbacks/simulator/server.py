"""Run a simulator on its own event loop in a daemon thread, for tests and the project's runner.

with serve_in_thread(Simulator(rate_interval_s=0)) as running:
    post(running.base_url + "/ZaloCallback/GetCallback", ...)
    assert running.sim.requests[0].code == 100
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from aiohttp import web

from esms_callbacks.simulator.app import GET_CALLBACK_PATH, make_app
from esms_callbacks.simulator.arrival import new_event_loop
from esms_callbacks.simulator.pusher import PushSettings
from esms_callbacks.simulator.state import Simulator

_START_TIMEOUT_S = 10.0
# In-flight handlers (a "slow" fault) get this long to finish at shutdown; tests must not hang.
_SHUTDOWN_TIMEOUT_S = 1.0


class RunningSimulator:
    """A simulator served on host:port (0 picks a free port) until `stop()`."""

    def __init__(
        self,
        sim: Simulator,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        push_settings: PushSettings | None = None,
    ) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.push_settings = push_settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def callback_url(self) -> str:
        return self.base_url + GET_CALLBACK_PATH

    def start(self) -> RunningSimulator:
        """Start serving and return once the port listens; raise if it could not."""
        if self._thread is not None:
            raise RuntimeError("this simulator is already running")
        self._thread = threading.Thread(target=self._run, name="esms-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise RuntimeError(f"simulator did not start within {_START_TIMEOUT_S} s")
        if self._start_error is not None:
            self._thread.join()
            self._thread = None
            raise RuntimeError(f"simulator failed to start: {self._start_error}")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; safe to call twice."""
        loop, runner, thread = self._loop, self._runner, self._thread
        if loop is None or thread is None:
            return
        if runner is not None:
            future = asyncio.run_coroutine_threadsafe(runner.cleanup(), loop)
            future.result(timeout=_SHUTDOWN_TIMEOUT_S + 5.0)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        self._loop = self._runner = self._thread = None

    def hold_loop(self, seconds: float) -> float:
        """Keep the serving loop busy for `seconds`, as a stalled server would be: requests
        wait in the kernel meanwhile. Returns once the hold has begun, with its end
        (time.time())."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("this simulator is not running")
        began = threading.Event()
        ends_s = time.time() + seconds

        def hold() -> None:
            nonlocal ends_s
            ends_s = time.time() + seconds
            began.set()
            time.sleep(seconds)

        loop.call_soon_threadsafe(hold)
        if not began.wait(_START_TIMEOUT_S):
            raise RuntimeError("the simulator's loop did not take the hold")
        return ends_s

    def __enter__(self) -> RunningSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # reported to start(), which raises in the caller's thread
            self._start_error = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self) -> None:
        runner = web.AppRunner(
            make_app(self.sim, self.push_settings),
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = _bound_port(runner, self.port)


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested


@contextmanager
def serve_in_thread(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    push_settings: PushSettings | None = None,
) -> Iterator[RunningSimulator]:
    """Serve `sim` in a daemon thread for the duration of the block."""
    running = RunningSimulator(sim, host, port, push_settings=push_settings).start()
    try:
        yield running
    finally:
        running.stop()
