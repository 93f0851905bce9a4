"""`esms-callbacks metrics`: /metrics (Prometheus, from the shared Redis state) and /healthz."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from redis.exceptions import RedisError

from esms_callbacks.accounts import AccountBook
from esms_callbacks.ops.metrics import AccountCollector
from esms_callbacks.ops.status import accounts_state
from esms_callbacks.runtime import Runtime, Runtimes
from esms_callbacks.settings import Settings


def registry(runtimes: Runtimes) -> CollectorRegistry:
    """A registry holding only the accounts' collector (no process metrics of this server)."""
    collected = CollectorRegistry(auto_describe=False)

    def snapshots() -> list[dict[str, Any]]:
        return accounts_state(runtimes)

    collected.register(AccountCollector(snapshots))
    return collected


def serving(runtime: Runtime | Runtimes) -> Runtimes:
    """The accounts to serve metrics of: a Runtime stands for its one account (tests)."""
    if isinstance(runtime, Runtimes):
        return runtime
    runtimes = Runtimes(AccountBook(runtime.settings, only=runtime.account))
    runtimes.shared = runtime.shared
    return runtimes


REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
RUNTIMES_KEY = web.AppKey("runtimes", Runtimes)


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(
        None, generate_latest, request.app[REGISTRY_KEY]
    )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    """200 while the account's Redis answers: what a liveness probe needs."""
    try:
        ping = request.app[RUNTIMES_KEY].shared.redis.ping
        await asyncio.get_running_loop().run_in_executor(None, ping)
    except (RedisError, OSError):
        return web.Response(status=503, text="redis unavailable\n")
    return web.Response(text="ok\n")


def make_app(runtime: Runtime | Runtimes) -> web.Application:
    runtimes = serving(runtime)
    app = web.Application()
    app[RUNTIMES_KEY] = runtimes
    app[REGISTRY_KEY] = registry(runtimes)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


def serve(host: str, port: int) -> None:
    print(f"metrics on http://{host}:{port}/metrics (and /healthz)", flush=True)
    runtimes = Runtimes(AccountBook(Settings.from_env()))  # it queues no drain
    web.run_app(make_app(runtimes), host=host, port=port, print=None, access_log=None)
