"""The receiver's site: how the push app listens (esms_callbacks.cli.receive runs it).

Served by aiohttp on a site of our own (`ReceiverSite`): each connection must send a request's
headers within ESMS_RECEIVER_HEADER_TIMEOUT (aiohttp has no such limit: a half-sent request
held its connection until the 75 s keep-alive timeout), and aiohttp's own lines, which quote
a malformed request line, are written with the push tokens hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiohttp import web

from esms_callbacks.settings import Settings
from esms_callbacks.tuning import RECEIVER_SHUTDOWN_S

http_log = logging.getLogger("esms.receiver.http")  # aiohttp's lines, tokens hidden

KEEPALIVE_TIMEOUT_S = 75.0  # an idle kept-alive connection's life, as web.run_app gave it
HEADERS_END = b"\r\n\r\n"
# The path's last part is a token, right or wrong (aiohttp may cut a long line mid-token).
_PUSH_PATH_TOKEN = re.compile(r"(/esms/push/)[^/?\s'\"\\]*")


@contextlib.asynccontextmanager
async def serving(
    app: web.Application,
    settings: Settings,
    host: str,
    port: int,
    tokens: Callable[[], Sequence[str]] = list,
) -> AsyncIterator[web.AppRunner]:
    """`app` listening on host:port (0: any free port) with the header timeout, aiohttp's
    lines written without the push tokens (what `tokens()` gives now: the accounts' may
    change); cleaned up (the app's cleanups run) on the way out, requests still in flight given
    RECEIVER_SHUTDOWN_S to be answered (aiohttp's default: a minute)."""
    redactor = TokenRedactor(tokens)
    http_log.addFilter(redactor)
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=KEEPALIVE_TIMEOUT_S,
        logger=http_log,
        shutdown_timeout=RECEIVER_SHUTDOWN_S,
    )
    await runner.setup()
    try:
        await ReceiverSite(runner, host, port, settings.receiver_header_timeout_s).start()
        yield runner
    finally:
        await runner.cleanup()
        http_log.removeFilter(redactor)


class ReceiverSite(web.BaseSite):
    """A TCP site whose connections must send their request headers in time (`TCPSite`'s
    are aiohttp's own RequestHandler, which has no such limit)."""

    __slots__ = ("_header_timeout_s", "_host", "_port")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, header_timeout_s: float
    ) -> None:
        super().__init__(runner)
        self._host, self._port, self._header_timeout_s = host, port, header_timeout_s

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None  # a site is made for a runner already set up
        loop = asyncio.get_running_loop()
        # What server() itself passes each connection's handler (the app's handler_args, the
        # runner's keep-alive timeout and logger): aiohttp offers no public way to read them.
        handler_args: dict[str, Any] = server._kwargs
        timeout_s = self._header_timeout_s

        def connection() -> HeaderTimeoutHandler:
            return HeaderTimeoutHandler(
                server, header_timeout_s=timeout_s, loop=loop, **handler_args
            )

        self._server = await loop.create_server(connection, self._host, self._port)


class HeaderTimeoutHandler(web.RequestHandler):
    """aiohttp's connection handler, closing a connection that has not sent a request's
    headers `header_timeout_s` after it opened (its first request) or after the first bytes
    of its next request (on a kept-alive connection; one idle between requests is left to
    the keep-alive timeout). Bytes after a request's headers start the next request's clock,
    a body's too: the receiver takes GETs, which have none."""

    __slots__ = ("_header_deadline", "_header_timeout_s")

    def __init__(self, manager: web.Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        if data and self._header_deadline is None:
            self._arm()  # the first bytes of the next request
        parsed = self._request_count  # aiohttp counts each request whose headers it has read
        super().data_received(data)
        if self._request_count != parsed:
            self._disarm()
            if data and not data.endswith(HEADERS_END):
                self._arm()  # the next request's first bytes came with these headers

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._header_deadline = loop.call_later(self._header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_late(self) -> None:
        self._header_deadline = None
        self.force_close()  # no answer: the client is not listening for one


class TokenRedactor(logging.Filter):
    """Writes a record with the push tokens hidden, in its message and its traceback: aiohttp's
    errors about a malformed request quote its request line."""

    def __init__(self, tokens: Sequence[str] | Callable[[], Sequence[str]]) -> None:
        super().__init__()
        fixed = [] if callable(tokens) else list(tokens)
        self._tokens: Callable[[], Sequence[str]] = tokens if callable(tokens) else lambda: fixed

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), ()
        if record.exc_info:  # formatted here, so that the formatter has nothing left to add
            lines = traceback.format_exception(*record.exc_info)
            record.exc_text, record.exc_info = self.redact("".join(lines).rstrip("\n")), None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True

    def redact(self, text: str) -> str:
        text = _PUSH_PATH_TOKEN.sub(r"\1<token>", text)
        for token in self._tokens():
            if token:
                text = text.replace(token, "<token>")
        return text
