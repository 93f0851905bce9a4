"""Helpers for push receiver tests: serve an aiohttp app in a thread, GET it, eSMS's params."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings
from tests.helpers import runtime_of

TOKEN = "test-token-0123456789abcdef"


@dataclass
class Served:
    base_url: str

    def push_url(self, token: str = TOKEN) -> str:
        return f"{self.base_url}/esms/push/{token}"


@contextmanager
def serve_app(make: Callable[[], web.Application]) -> Iterator[Served]:
    """Serve the app `make()` builds on a free port, on its own loop in a thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        runner = web.AppRunner(make(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["runner"] = runner
        holder["port"] = runner.addresses[0][1]

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            holder["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in holder:
        raise RuntimeError(f"the app did not start: {holder['error']}")
    try:
        yield Served(f"http://127.0.0.1:{holder['port']}")
    finally:
        runner = holder["runner"]
        assert isinstance(runner, web.AppRunner)
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=20)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    headers: dict[str, str]


def get(
    url: str,
    params: dict[str, str] | list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> Answer:
    if params is not None:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Answer(response.status, response.read().decode(), dict(response.headers))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, exc.read().decode(), dict(exc.headers))


def push_params(
    ref_id: str, oa_id: str, send_status: int = 5, failed: int = 0, error: str = ""
) -> dict[str, str]:
    """A push as eSMS sends it (names, quoting and all), for one ZNS message."""
    return {
        "SMSID": ref_id,
        "SendFailed": str(failed),
        "SendStatus": str(send_status),
        "SendSuccess": "0" if failed or send_status != 5 else "1",
        "TotalPrice": "0.0000" if failed else "300.0000",
        "TotalReceiver": "1",
        "TotalSent": "1" if send_status == 5 else "0",
        "RequestId": "",
        "TypeId": "25",
        "telcoid": "2",
        "phonenumber": "0901888484",
        "partnerids": "",
        "error_info": json.dumps(error) if error else "",  # a JSON string, quotes and all
        "oaid": oa_id,
        "tempid": "2056446",
    }


@contextmanager
def receiving(settings: Settings) -> Iterator[tuple[Served, Runtime]]:
    """A receiver (HTTP and applier thread, as `esms-callbacks receive` runs it)."""
    from esms_callbacks.cli.receive import build_app

    runtime = runtime_of(settings)
    with serve_app(lambda: build_app(settings)) as served:
        yield served, runtime


def stats(runtime: Runtime) -> dict[str, int]:
    raw: dict[Any, Any] = runtime.redis.hgetall(runtime.keys.stats)
    return {k.decode(): int(v) for k, v in raw.items() if not k.startswith(b"request_time")}
