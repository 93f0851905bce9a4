"""The receiver's HTTP side: eSMS's GET on /esms/push/<token>, answered once recorded.

Answers: 200 once the push is in the inbox (eSMS stops retrying after a 200, so never before);
400 with a reason for a malformed push, or one without what eSMS sends with every status
(push.parse.parse_esms_push); 404 for a wrong token (neither ESMS_PUSH_TOKEN nor, while it is
being rotated, ESMS_PUSH_TOKEN_PREVIOUS), exactly as for a path that does not exist; 403 for
a source outside ESMS_PUSH_ALLOW_FROM; 503 when Redis cannot record it or the inbox is full
(eSMS retries). A source over ESMS_PUSH_RATE is slowed down, not refused: its push waits for
its turn (up to ESMS_PUSH_RATE_WAIT) and only past that gets 429.

The token tells whose push it is: each account of ESMS_ACCOUNTS_FILE has a token of its own
(`push_token_env`), so its CallbackUrl names it, and its pushes go to its inbox. An account's
tokens are read in one place, `push_tokens`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from esms_callbacks.accounts import Account
from esms_callbacks.engine.keys import UNNAMED_PUSHES, AccountKeys
from esms_callbacks.errors import MalformedPush, NotDurable, printable
from esms_callbacks.push.inbox import PushRecorder, ReadyNamer, Recorded
from esms_callbacks.push.parse import Push, parse_esms_push
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


def push_tokens(account: Account) -> dict[str, str]:
    """An account's push tokens by which they are ("current", "previous"); "" for none."""
    secrets = account.secrets
    return {"current": secrets.push_token, "previous": secrets.push_token_previous}


@dataclass
class AccountPushes:
    """One account's side of the receiver: where its pushes go and what is counted of them."""

    account: Account
    recorder: PushRecorder
    keys: AccountKeys
    # Answers that never reach the recording script, counted here and added to the account's
    # stats every second (kept while Redis is away).
    counts: Counter[str] = field(default_factory=Counter)


@dataclass
class ReceiverState:
    settings: Settings  # the receiver's own: where it listens, whom it takes pushes from
    redis: aioredis.Redis
    accounts: list[AccountPushes]
    namer: ReadyNamer  # every account's: pushes recorded together are named in one call
    applier_healthy: Callable[[], bool] = lambda: True
    # A token's digest -> its account and which of its tokens it is ("current", "previous").
    by_token: dict[bytes, tuple[AccountPushes, str]] = field(default_factory=dict)
    # Answers no account can be named for (a wrong token): the account's own stats with one
    # account, else the deployment's (UNNAMED_PUSHES).
    counts: Counter[str] = field(default_factory=Counter)
    waiting: int = 0  # pushes sleeping toward their source's turn
    logged_at_s: dict[str, float] = field(default_factory=dict)
    unlogged: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.serve(self.accounts)

    def serve(self, accounts: list[AccountPushes]) -> None:
        """Take pushes for `accounts` from now on (the accounts file read again)."""
        by_token: dict[bytes, tuple[AccountPushes, str]] = {}
        for account in accounts:
            for which, token in push_tokens(account.account).items():
                if token:
                    by_token[_digest(token)] = (account, which)
        self.accounts, self.by_token = accounts, by_token  # one swap: no half-built map seen

    @property
    def tokens(self) -> list[str]:
        """Every account's tokens (to keep out of aiohttp's lines)."""
        return [t for a in self.accounts for t in push_tokens(a.account).values() if t]

    def log_now(self, kind: str) -> int | None:
        """Whether to log a `kind` refusal now: None if not; else how many went unlogged."""
        now_s = time.monotonic()
        if now_s - self.logged_at_s.get(kind, -RECEIVER_LOG_EVERY_S) < RECEIVER_LOG_EVERY_S:
            self.unlogged[kind] += 1
            return None
        self.logged_at_s[kind] = now_s
        return self.unlogged.pop(kind, 0)


STATE = web.AppKey("receiver", ReceiverState)


def make_app(
    settings: Settings, client: aioredis.Redis, accounts: Mapping[str, Account]
) -> web.Application:
    """The receiver for `accounts` (by name), each told apart by its push tokens."""
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        handler_args={"max_line_size": MAX_LINE_BYTES},
    )
    namer = ReadyNamer(client)
    app[STATE] = ReceiverState(
        settings,
        client,
        [
            account_pushes(client, settings, account, namer)
            for _, account in sorted(accounts.items())
        ],
        namer,
    )
    app.router.add_route("*", PUSH_PATH, handle_push)
    app.router.add_route("*", PUSH_PATH + "/", handle_push)  # a CallbackUrl typed with a slash
    app.router.add_get(HEALTH_PATH, handle_health)
    # Cleanups run in reverse: counts are flushed before the client closes.
    app.cleanup_ctx.append(_closing_client)
    app.cleanup_ctx.append(_flush_counts)
    return app


def account_pushes(
    client: aioredis.Redis, settings: Settings, account: Account, namer: ReadyNamer
) -> AccountPushes:
    keys = AccountKeys(account.require_key_id())
    recorder = PushRecorder(
        client,
        keys,
        settings.push_rate_per_source,
        settings.push_inbox_max,
        settings.push_rate_wait_s,
        settings.redis_replicas,
        settings.redis_replica_timeout_s,
        namer,
    )
    return AccountPushes(account, recorder, keys)


async def handle_push(request: web.Request) -> web.Response:
    state = request.app[STATE]
    found = _account_of(state, request.match_info.get("token", ""))
    if found is None:
        state.counts["wrong_token"] += 1
        raise web.HTTPNotFound()  # the same answer as any unknown path
    account, token = found
    if token == "previous":
        account.counts["previous_token"] += 1  # until it stays 0, eSMS has not fully switched
    if request.method != "GET":
        account.counts["malformed"] += 1
        raise web.HTTPMethodNotAllowed(request.method, ["GET"])
    source = client_address(
        request.remote,
        request.headers.getall("X-Forwarded-For", []),
        state.settings.push_trusted_proxies,
    )
    if not allowed(source, state.settings.push_allow_from):
        account.counts["forbidden"] += 1
        _log(state, "forbidden", "refused a push from %s: not in ESMS_PUSH_ALLOW_FROM", source)
        return web.Response(status=403, text="source not allowed\n")
    try:
        push = parse_esms_push(request.rel_url.query.items())
    except MalformedPush as exc:
        account.counts["malformed"] += 1
        _log(state, "malformed", "malformed push from %s: %s", source, exc)
        return web.Response(status=400, text=f"malformed push: {exc}\n")
    try:
        recorded = await _record(state, account, push, str(source or "unknown"))
    except (RedisError, OSError, NotDurable) as exc:
        account.counts["unavailable"] += 1
        _log(
            state,
            "unavailable",
            "could not record a push of account %s for %s (answered 503, eSMS retries): %s",
            account.account.name,
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
            "the push inbox of account %s holds %d pushes: answering 503",
            account.account.name,
            state.settings.push_inbox_max,
        )
        return _unavailable("inbox full")
    _log(state, "rate_limited", "refused a push from %s: over ESMS_PUSH_RATE", source)
    retry_after_s = max(1, round(recorded.retry_after_s))
    return web.Response(
        status=429, text="too many pushes\n", headers={"Retry-After": str(retry_after_s)}
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _account_of(state: ReceiverState, given: str) -> tuple[AccountPushes, str] | None:
    """Whose token `given` is, and which of its tokens ("current", "previous"); None for a
    wrong one. Looked up by its digest (a lookup that tells nothing of a token's prefix), then
    compared in constant time."""
    found = state.by_token.get(_digest(given))
    if found is None:
        return None
    account, which = found
    token = push_tokens(account.account)[which]
    return found if hmac.compare_digest(given.encode(), token.encode()) else None


async def _record(
    state: ReceiverState, account: AccountPushes, push: Push, source: str
) -> Recorded:
    """Record the push; over its source's rate, wait for the turn reserved for it first."""
    recorded = await account.recorder.record(push, source)
    if not recorded.wait_s:
        return recorded
    if state.waiting >= RECEIVER_MAX_WAITING_PUSHES:  # bounded: a flood cannot pile up sleepers
        account.counts["rate_limited"] += 1
        return Recorded(ok=False, retry_after_s=recorded.wait_s)
    state.waiting += 1
    try:
        await asyncio.sleep(recorded.wait_s)
    finally:
        state.waiting -= 1
    return await account.recorder.record(push, source, waited=True)


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
    unnamed_into = state.accounts[0].keys.stats if len(state.accounts) == 1 else UNNAMED_PUSHES
    batches = [(state, unnamed_into)] + [
        (account, account.keys.stats) for account in state.accounts
    ]
    taken = [(holder, key, holder.counts) for holder, key in batches if holder.counts]
    if not taken:
        return
    for holder, _, _ in taken:
        holder.counts = Counter()
    try:
        async with state.redis.pipeline(transaction=False) as pipe:
            for _, key, counts in taken:
                for result, count in counts.items():
                    pipe.hincrby(key, f"pushes:{result}", count)
            await pipe.execute()
    except (RedisError, OSError):
        for holder, _, counts in taken:  # Redis is away: count them when it is back
            holder.counts.update(counts)
