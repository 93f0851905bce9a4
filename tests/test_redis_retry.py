"""A script never runs twice because the client retried it.

A TCP proxy in front of the test Redis forwards a script call, lets Redis run it, then drops
the connection instead of passing the reply on: what a timeout or a reset after sending looks
like. redis-py's default retry would send the script again on a new connection.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from esms_callbacks.engine.backlog import Backlog, Tally
from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.redis_connect import connect
from esms_callbacks.engine.scripts import script_text
from tests.helpers import T0


class DroppingProxy:
    """Forwards everything to Redis, except that the reply to the first EVALSHA is dropped
    together with its connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.target)
        with client, upstream:
            while data := client.recv(65536):
                upstream.sendall(data)
                reply = upstream.recv(65536)
                if b"EVALSHA" in data and not self.dropped.is_set():
                    self.dropped.set()  # Redis ran it; the caller never hears so
                    return
                client.sendall(reply)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[DroppingProxy]:
    parts = urlsplit(redis_url)
    running = DroppingProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    yield running
    running.close()


def test_a_settle_whose_reply_is_lost_counts_its_request_once(redis_url, redis_client, proxy):
    # given the settle script loaded, and a project client that reaches Redis through the proxy
    db = urlsplit(redis_url).path.strip("/") or "0"
    redis_client.script_load(script_text("backlog_prelude", "backlog_settle"))
    keys = AccountKeys("retry-once")
    backlog = Backlog(connect(f"redis://127.0.0.1:{proxy.port}/{db}", 2.0), keys, 3600)

    # when a settle's reply is lost on the way back
    with pytest.raises(redis.ConnectionError):
        backlog.settle("oa", "tok", T0, [], [], Tally(counters={"requests": 1}))

    # expect the request counted once: the script ran, and was not sent again
    assert proxy.dropped.is_set()
    assert redis_client.hget(keys.stats, "requests") == b"1"
    redis_client.delete(keys.stats)
