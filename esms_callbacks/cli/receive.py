"""`esms-callbacks receive`: the HTTP receiver and its applier thread in one process.

The receiver answers eSMS once a push is in the inbox; the applier thread turns the inbox
into status events, with the same backlog and publisher a worker uses.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from esms_callbacks.engine.redis_connect import connect_async
from esms_callbacks.engine.redis_policy import eviction_problem
from esms_callbacks.errors import ConfigError
from esms_callbacks.push.applier import ApplierThread
from esms_callbacks.push.apply import PushApplier
from esms_callbacks.push.receiver import STATE, make_app
from esms_callbacks.push.serve import serving
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings

log = logging.getLogger("esms.receiver")


def build_app(settings: Settings) -> web.Application:
    """The receiver app with its applier thread started and stopped with it."""
    problem = settings.push_token_problem()
    if problem:
        raise ConfigError(problem)
    if not settings.push_allow_from:
        log.warning(
            "ESMS_PUSH_ALLOW_FROM is not set: anyone who learns the push URL can push "
            "statuses (the token is the only check). Set ESMS_PUSH_ALLOW_FROM=<eSMS's "
            "addresses> (comma-separated addresses or networks, e.g. 203.0.113.0/24; ask "
            "eSMS, or read them from your proxy's log) so other sources get 403"
        )
    runtime = Runtime(settings)  # the account must be known: raises AccountUnknown otherwise
    eviction = eviction_problem(runtime.redis)
    if eviction:
        raise ConfigError(f"not starting: {eviction}")
    client = connect_async(settings.redis_target(), timeout_s=5)
    app = make_app(settings, client)
    inbox = runtime.inbox
    applier = PushApplier(settings, runtime.backlog, inbox, runtime.publish_durably, runtime.clock)

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
    asyncio.run(_serve_until_stopped(app, settings, host, port))


async def _serve_until_stopped(
    app: web.Application, settings: Settings, host: str, port: int
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully (the applier thread stops
    with the app), as web.run_app did."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    async with serving(app, settings, host, port) as runner:
        log.warning(
            "receiving eSMS pushes on http://%s:%d/esms/push/<ESMS_PUSH_TOKEN>%s for account %s",
            host,
            runner.addresses[0][1],
            " (and <ESMS_PUSH_TOKEN_PREVIOUS>)" if settings.push_token_previous else "",
            settings.account_id,
        )
        await stopping.wait()
