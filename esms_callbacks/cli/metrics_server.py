"""`esms-callbacks metrics`: /metrics (Prometheus, from the shared Redis state) and /healthz."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from redis.exceptions import RedisError

from esms_callbacks.ops.metrics import AccountCollector
from esms_callbacks.ops.status import account_state
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings


def registry(runtime: Runtime) -> CollectorRegistry:
    """A registry holding only the account's collector (no process metrics of this server)."""
    collected = CollectorRegistry(auto_describe=False)

    def snapshot() -> dict[str, object]:
        return account_state(runtime, runtime.clock.now_s())

    collected.register(AccountCollector(snapshot))
    return collected


REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
RUNTIME_KEY = web.AppKey("runtime", Runtime)


async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.get_running_loop().run_in_executor(
        None, generate_latest, request.app[REGISTRY_KEY]
    )
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    """200 while the account's Redis answers: what a liveness probe needs."""
    try:
        ping = request.app[RUNTIME_KEY].redis.ping
        await asyncio.get_running_loop().run_in_executor(None, ping)
    except (RedisError, OSError):
        return web.Response(status=503, text="redis unavailable\n")
    return web.Response(text="ok\n")


def make_app(runtime: Runtime) -> web.Application:
    app = web.Application()
    app[RUNTIME_KEY] = runtime
    app[REGISTRY_KEY] = registry(runtime)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app


def serve(host: str, port: int) -> None:
    print(f"metrics on http://{host}:{port}/metrics (and /healthz)", flush=True)
    runtime = Runtime(Settings.from_env())  # reads state only: it queues no drain
    web.run_app(make_app(runtime), host=host, port=port, print=None, access_log=None)
