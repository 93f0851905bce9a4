"""`esms-callbacks receive`: the HTTP receiver and its applier thread in one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from esms_callbacks.receiver.app import STATE, make_app
from esms_callbacks.receiver.applier import ApplierThread
from esms_callbacks.workers.errors import ConfigError
from esms_callbacks.workers.push_apply import PushApplier
from esms_callbacks.workers.redis_policy import eviction_problem
from esms_callbacks.workers.runtime import Runtime
from esms_callbacks.workers.settings import Settings

log = logging.getLogger("esms.receiver")


def build_app(settings: Settings) -> web.Application:
    """The receiver app with its applier thread started and stopped with it."""
    problem = settings.push_token_problem()
    if problem:
        raise ConfigError(problem)
    runtime = Runtime(settings)  # the account must be known: raises AccountUnknown otherwise
    eviction = eviction_problem(runtime.redis)
    if eviction:
        raise ConfigError(f"not starting: {eviction}")
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    app = make_app(settings, client)
    inbox = runtime.inbox
    applier = PushApplier(
        settings, runtime.backlog, inbox, runtime.publisher.publish, runtime.clock
    )

    thread = ApplierThread(applier, inbox, settings.push_reclaim_after_s)
    app[STATE].applier_healthy = thread.healthy

    async def applier_thread(_: web.Application) -> AsyncIterator[None]:
        thread.start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, thread.stop)

    app.cleanup_ctx.append(applier_thread)
    return app


def serve(settings: Settings, host: str, port: int) -> None:
    app = build_app(settings)
    log.warning(
        "receiving eSMS pushes on http://%s:%d/esms/push/<ESMS_PUSH_TOKEN> for account %s",
        host,
        port,
        settings.account_id,
    )
    web.run_app(app, host=host, port=port, print=None, access_log=None)
