"""The receiver's HTTP side: eSMS's GET on /esms/push/<token>, answered once recorded.

Answers: 200 once the push is in the inbox (eSMS stops retrying after a 200, so never before);
400 with a reason for a malformed push, or one without what eSMS sends with every status
(push.parse.parse_esms_push); 404 for a wrong token (neither ESMS_PUSH_TOKEN nor, while it is
being rotated, ESMS_PUSH_TOKEN_PREVIOUS), exactly as for a path that does not exist; 403 for
a source outside ESMS_PUSH_ALLOW_FROM; 503 when Redis cannot record it or the inbox is full
(eSMS retries). A source over ESMS_PUSH_RATE is slowed down, not refused: its push waits for
its turn (up to ESMS_PUSH_RATE_WAIT) and only past that gets 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.errors import NotDurable, printable
from esms_callbacks.push.inbox import PushRecorder, Recorded
from esms_callbacks.push.parse import MalformedPush, Push, parse_esms_push
from esms_callbacks.push.sources import allowed, client_address
from esms_callbacks.settings import Settings
from esms_callbacks.tuning import (
    RECEIVER_COUNTS_FLUSH_S,
    RECEIVER_LOG_EVERY_S,
    RECEIVER_MAX_WAITING_PUSHES,
    RECEIVER_RETRY_AFTER_S,
)

log = logging.getLogger("esms.receiver")

PUSH_PATH = "/esms/push/{token}"
HEALTH_PATH = "/esms/health"
MAX_BODY_BYTES = 16 * 1024  # eSMS sends a GET; a body is never needed
# eSMS puts everything in the query: a long Vietnamese error_info, percent-encoded, passes
# aiohttp's default request line limit (8,190 bytes) well before our 4,000-character check.
MAX_LINE_BYTES = 64 * 1024


@dataclass
class ReceiverState:
    settings: Settings
    redis: aioredis.Redis
    recorder: PushRecorder
    keys: AccountKeys
    applier_healthy: Callable[[], bool] = lambda: True
    # Answers that never reach the recording script, counted here and added to the account's
    # stats every second (kept while Redis is away).
    counts: Counter[str] = field(default_factory=Counter)
    waiting: int = 0  # pushes sleeping toward their source's turn
    logged_at_s: dict[str, float] = field(default_factory=dict)
    unlogged: Counter[str] = field(default_factory=Counter)

    def log_now(self, kind: str) -> int | None:
        """Whether to log a `kind` refusal now: None if not; else how many went unlogged."""
        now_s = time.monotonic()
        if now_s - self.logged_at_s.get(kind, -RECEIVER_LOG_EVERY_S) < RECEIVER_LOG_EVERY_S:
            self.unlogged[kind] += 1
            return None
        self.logged_at_s[kind] = now_s
        return self.unlogged.pop(kind, 0)


STATE = web.AppKey("receiver", ReceiverState)


def make_app(settings: Settings, client: aioredis.Redis) -> web.Application:
    keys = AccountKeys(settings.account_id)
    recorder = PushRecorder(
        client,
        keys,
        settings.push_rate_per_source,
        settings.push_inbox_max,
        settings.push_rate_wait_s,
        settings.redis_replicas,
        settings.redis_replica_timeout_s,
    )
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        handler_args={"max_line_size": MAX_LINE_BYTES},
    )
    app[STATE] = ReceiverState(settings, client, recorder, keys)
    app.router.add_route("*", PUSH_PATH, handle_push)
    app.router.add_route("*", PUSH_PATH + "/", handle_push)  # a CallbackUrl typed with a slash
    app.router.add_get(HEALTH_PATH, handle_health)
    # Cleanups run in reverse: counts are flushed before the client closes.
    app.cleanup_ctx.append(_closing_client)
    app.cleanup_ctx.append(_flush_counts)
    return app


async def handle_push(request: web.Request) -> web.Response:
    state = request.app[STATE]
    token = _token_used(state.settings, request.match_info.get("token", ""))
    if token is None:
        state.counts["wrong_token"] += 1
        raise web.HTTPNotFound()  # the same answer as any unknown path
    if token == "previous":
        state.counts["previous_token"] += 1  # until it stays 0, eSMS has not fully switched
    if request.method != "GET":
        state.counts["malformed"] += 1
        raise web.HTTPMethodNotAllowed(request.method, ["GET"])
    source = client_address(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        state.settings.push_trusted_proxies,
    )
    if not allowed(source, state.settings.push_allow_from):
        state.counts["forbidden"] += 1
        _log(state, "forbidden", "refused a push from %s: not in ESMS_PUSH_ALLOW_FROM", source)
        return web.Response(status=403, text="source not allowed\n")
    try:
        push = parse_esms_push(request.rel_url.query.items())
    except MalformedPush as exc:
        state.counts["malformed"] += 1
        _log(state, "malformed", "malformed push from %s: %s", source, exc)
        return web.Response(status=400, text=f"malformed push: {exc}\n")
    try:
        recorded = await _record(state, push, str(source or "unknown"))
    except (RedisError, OSError, NotDurable) as exc:
        state.counts["unavailable"] += 1
        _log(
            state,
            "unavailable",
            "could not record a push for %s (answered 503, eSMS retries): %s",
            printable(push.ref_id, 40),
            exc,
        )
        return _unavailable("cannot record the push now")
    if recorded.ok:
        return web.Response(text="OK\n")
    if recorded.full:
        _log(
            state,
            "full",
            "the push inbox holds %d pushes: answering 503",
            state.settings.push_inbox_max,
        )
        return _unavailable("inbox full")
    _log(state, "rate_limited", "refused a push from %s: over ESMS_PUSH_RATE", source)
    retry_after_s = max(1, round(recorded.retry_after_s))
    return web.Response(
        status=429, text="too many pushes\n", headers={"Retry-After": str(retry_after_s)}
    )


def _token_used(settings: Settings, given: str) -> str | None:
    """Which token `given` is: "current", "previous" or None (a wrong one); each compared in
    constant time."""
    given_bytes = given.encode()
    current = hmac.compare_digest(given_bytes, settings.push_token.encode())
    previous = hmac.compare_digest(given_bytes, settings.push_token_previous.encode())
    if current:
        return "current"
    return "previous" if previous and settings.push_token_previous else None


async def _record(state: ReceiverState, push: Push, source: str) -> Recorded:
    """Record the push; over its source's rate, wait for the turn reserved for it first."""
    recorded = await state.recorder.record(push, source)
    if not recorded.wait_s:
        return recorded
    if state.waiting >= RECEIVER_MAX_WAITING_PUSHES:  # bounded: a flood cannot pile up sleepers
        state.counts["rate_limited"] += 1
        return Recorded(ok=False, retry_after_s=recorded.wait_s)
    state.waiting += 1
    try:
        await asyncio.sleep(recorded.wait_s)
    finally:
        state.waiting -= 1
    return await state.recorder.record(push, source, waited=True)


async def handle_health(request: web.Request) -> web.Response:
    """200 while Redis answers and the applier thread runs: what a load balancer needs."""
    state = request.app[STATE]
    if not state.applier_healthy():
        return _unavailable("push applier not running")
    try:
        await state.redis.ping()
    except (RedisError, OSError):
        return _unavailable("redis unavailable")
    return web.Response(text="ok\n")


def _unavailable(reason: str) -> web.Response:
    return web.Response(
        status=503, text=f"{reason}\n", headers={"Retry-After": str(RECEIVER_RETRY_AFTER_S)}
    )


def _log(state: ReceiverState, kind: str, message: str, *args: object) -> None:
    unlogged = state.log_now(kind)
    if unlogged is not None:
        suffix = f" (and {unlogged} more like it since the last line)" if unlogged else ""
        log.warning(message + suffix, *args)


async def _closing_client(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[STATE].redis.aclose()


async def _flush_counts(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_flush_loop(app[STATE]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await _flush(app[STATE])


async def _flush_loop(state: ReceiverState) -> None:
    while True:
        await asyncio.sleep(RECEIVER_COUNTS_FLUSH_S)
        await _flush(state)


async def _flush(state: ReceiverState) -> None:
    counts, state.counts = state.counts, Counter()
    if not counts:
        return
    try:
        async with state.redis.pipeline(transaction=False) as pipe:
            for result, count in counts.items():
                pipe.hincrby(state.keys.stats, f"pushes:{result}", count)
            await pipe.execute()
    except (RedisError, OSError):
        state.counts.update(counts)  # Redis is away: count them when it is back
