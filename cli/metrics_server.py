"""`esms-callbacks metrics`: serve /metrics (Prometheus text) from the shared Redis state."""

from __future__ import annotations

import asyncio

from aiohttp import web

from workers.metrics import render
from workers.runtime import get_runtime
from workers.status import account_state

CONTENT_TYPE = "text/plain; version=0.0.4"


def snapshot() -> str:
    runtime = get_runtime()
    return render(account_state(runtime, runtime.clock.now_s()))


async def metrics(_: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(None, snapshot)
    return web.Response(text=body, headers={"Content-Type": CONTENT_TYPE})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


def serve(host: str, port: int) -> None:
    print(f"metrics on http://{host}:{port}/metrics", flush=True)
    web.run_app(make_app(), host=host, port=port, print=None, access_log=None)
