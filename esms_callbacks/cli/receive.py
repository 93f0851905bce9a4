"""`esms-callbacks receive`: the HTTP receiver and its applier threads in one process.

The receiver answers eSMS once a push is in the inbox; the applier threads (push.applier: a
few, whatever the number of accounts) turn the inboxes into status events, with the same
backlog and publisher a worker uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from esms_callbacks.accounts import (
    CHECK_EVERY_S,
    DEFAULT_ACCOUNT,
    RECEIVER_SECRETS,
    Account,
    AccountBook,
)
from esms_callbacks.engine.redis_connect import connect_async
from esms_callbacks.engine.redis_policy import eviction_problem
from esms_callbacks.errors import ConfigError
from esms_callbacks.push.applier import AccountInbox, Appliers
from esms_callbacks.push.apply import PushApplier
from esms_callbacks.push.receiver import STATE, account_pushes, make_app, push_tokens
from esms_callbacks.push.serve import serving
from esms_callbacks.runtime import Runtimes
from esms_callbacks.settings import Settings
from esms_callbacks.tuning import APPLIER_STOP_WITHIN_S

SHOWN_ACCOUNTS = 10  # accounts named one by one in the start-up lines; the rest counted

log = logging.getLogger("esms.receiver")


def build_app(settings: Settings) -> web.Application:
    """The receiver app for every account with a push token, its applier threads (a few,
    whatever the number of accounts) started and stopped with it."""
    book = AccountBook(settings, RECEIVER_SECRETS)  # ConfigError: not starting
    accounts = receiving_accounts(book)
    if not settings.push_allow_from:
        log.warning(
            "ESMS_PUSH_ALLOW_FROM is not set: anyone who learns the push URL can push "
            "statuses (the token is the only check). Set ESMS_PUSH_ALLOW_FROM=<eSMS's "
            "addresses> (comma-separated addresses or networks, e.g. 203.0.113.0/24; ask "
            "eSMS, or read them from your proxy's log) so other sources get 403"
        )
    runtimes = Runtimes(book)  # the accounts must be known: NoAccountNamed otherwise
    eviction = eviction_problem(runtimes.shared.redis)
    if eviction:
        raise ConfigError(f"not starting: {eviction}")
    client = connect_async(settings.redis_target(), timeout_s=5)
    app = make_app(settings, client, accounts)
    appliers = Appliers(runtimes.shared.redis, settings.push_reclaim_after_s)
    applied = AppliedAccounts(runtimes, appliers)
    app[STATE].applier_healthy = appliers.healthy

    async def applier_threads(_: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, applied.serve, accounts)
        appliers.start()
        watching = asyncio.create_task(_follow_accounts(app, book, applied, client))
        yield
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await loop.run_in_executor(None, appliers.stop, APPLIER_STOP_WITHIN_S)

    app.cleanup_ctx.append(applier_threads)
    app[BOOK] = book
    app[APPLIERS] = appliers
    return app


BOOK = web.AppKey("accounts", AccountBook)
APPLIERS = web.AppKey("appliers", Appliers)


class AppliedAccounts:
    """The accounts whose pushes the applier threads apply, each one's PushApplier built once
    (again when its settings change: the accounts file read again)."""

    def __init__(self, runtimes: Runtimes, appliers: Appliers) -> None:
        self._runtimes = runtimes
        self._appliers = appliers
        self._built: dict[str, tuple[Account, AccountInbox]] = {}

    def serve(self, accounts: Mapping[str, Account]) -> None:
        built = {}
        for name, account in sorted(accounts.items()):
            kept = self._built.get(name)
            built[name] = kept if kept and kept[0] == account else (account, self._build(name))
        self._built = built
        self._appliers.serve({account.keys_name: account for _, account in built.values()})

    def _build(self, name: str) -> AccountInbox:
        runtime = self._runtimes.get(name)
        applier = PushApplier(
            runtime.settings,
            runtime.account,
            runtime.backlog,
            runtime.inbox,
            runtime.publish_durably,
            runtime.clock,
        )
        return AccountInbox(name, runtime.keys.account_id, runtime.inbox, applier)


async def _follow_accounts(
    app: web.Application, book: AccountBook, applied: AppliedAccounts, client: Any
) -> None:
    """Take a changed accounts file (or SIGHUP: book.reload_soon) without a restart: new
    tokens answered and their pushes applied, removed ones 404."""
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        try:
            await _take_changes(app, book, applied, client)
        except Exception:  # logged, and looked at again: following the file must not stop
            log.exception("could not take the accounts file's changes; trying again")


async def _take_changes(
    app: web.Application, book: AccountBook, applied: AppliedAccounts, client: Any
) -> None:
    """One look at the file; what changed, taken."""
    if not book.refresh():
        return
    try:
        accounts = receiving_accounts(book)
    except ConfigError as exc:
        log.error("accounts file read again, pushes still taken as before: %s", exc)
        return
    await asyncio.get_running_loop().run_in_executor(None, applied.serve, accounts)
    state = app[STATE]
    kept = {a.account: a for a in state.accounts}  # unchanged: its counts not yet flushed
    state.serve(
        [
            kept.get(account) or account_pushes(client, book.settings, account, state.namer)
            for _, account in sorted(accounts.items())
        ]
    )
    log.warning("taking pushes for %d accounts", len(accounts))


def receiving_accounts(book: AccountBook) -> dict[str, Account]:
    """The accounts whose pushes this receiver takes: every one with a push token (with an
    accounts file: the book checked each token), or the one account, which must have one.
    ConfigError naming the problem."""
    accounts = book.accounts()
    if not book.from_file:
        problem = accounts[DEFAULT_ACCOUNT].secrets.push_token_problem()
        if problem:
            raise ConfigError(problem)
        return dict(accounts)
    with_token = {name: a for name, a in accounts.items() if push_tokens(a)["current"]}
    if not with_token:
        unreadable = "".join(f"; {why}" for why in book.unavailable().values())
        raise ConfigError(
            f"no account of ESMS_ACCOUNTS_FILE={book.settings.accounts_file} has a push token "
            f"here: give the accounts whose pushes come here push_token_env{unreadable}"
        )
    return with_token


def serve(settings: Settings, host: str, port: int) -> None:
    app = build_app(settings)
    asyncio.run(_serve_until_stopped(app, settings, host, port))


async def _serve_until_stopped(
    app: web.Application, settings: Settings, host: str, port: int
) -> None:
    """Serve until SIGINT or SIGTERM, then shut down within a few seconds: the applier
    threads told at once to take no new work, pushes in flight given RECEIVER_SHUTDOWN_S to be
    answered, the threads APPLIER_STOP_WITHIN_S from the signal to finish their batch."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, app[BOOK].reload_soon)  # read the accounts again
    state = app[STATE]
    async with serving(app, settings, host, port, lambda: state.tokens) as runner:
        for account in state.accounts[:SHOWN_ACCOUNTS]:
            log.warning(
                "receiving eSMS pushes on http://%s:%d/esms/push/<its push token>%s for account %s",
                host,
                runner.addresses[0][1],
                " (and its previous one)" if push_tokens(account.account)["previous"] else "",
                account.account.name,
            )
        if len(state.accounts) > SHOWN_ACCOUNTS:
            log.warning(
                "... and for %d more accounts, each on its own token",
                len(state.accounts) - SHOWN_ACCOUNTS,
            )
        await stopping.wait()
        app[APPLIERS].stop_soon()
