"""Half-sent requests: a real `esms-callbacks receive` on a real port, raw sockets.

Given a receiver whose header timeout (ESMS_RECEIVER_HEADER_TIMEOUT) is 0.5 s, expect a
connection that has not sent complete request headers that long after it opened (or, on a
kept-alive connection, after its next request's first byte) closed by the receiver, while
pushes go on being answered and a kept-alive connection idle between requests stays open.
"""

from __future__ import annotations

import select
import socket
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.harness import receiver_command
from esms_callbacks.cli.processes import Child, free_port, stop_all
from esms_callbacks.settings import Settings
from tests.helpers import wait_until
from tests.procs import settings_env
from tests.receiving import TOKEN, get, push_params

OA = "1397492183140006179"
HEADER_TIMEOUT_S = 0.5
CLOSED_WITHIN_S = 5.0  # generous: before, such connections stayed open 75 s
EARLIEST_S = HEADER_TIMEOUT_S - 0.1  # timers may fire a little early; never much
PATH = f"/esms/push/{TOKEN}"


@contextmanager
def receiver(settings: Settings, log_dir: Path) -> Iterator[int]:
    """`esms-callbacks receive` with a 0.5 s header timeout; its port, once it accepts."""
    port = free_port()
    env = settings_env(
        settings, ESMS_PUSH_TOKEN=TOKEN, ESMS_RECEIVER_HEADER_TIMEOUT=str(HEADER_TIMEOUT_S)
    )
    child = Child("receiver", receiver_command(port), env, log_dir / "receiver.log")
    try:
        child.wait_ready(timeout_s=30)
        wait_until(lambda: get(f"http://127.0.0.1:{port}/esms/health").status == 200, 10, "up")
        yield port
    finally:
        stop_all([child])


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(ref_id: str) -> bytes:
    query = urllib.parse.urlencode(push_params(ref_id, OA))
    return f"GET {PATH}?{query} HTTP/1.1\r\nHost: receiver\r\n\r\n".encode()


def read_response(sock: socket.socket) -> int:
    """Read one whole response off `sock` (Content-Length bodies); its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(v) for k, _, v in (h.partition(": ") for h in lines) if k == "Content-Length")
    while len(body) < length:
        body += sock.recv(4096)
    return int(lines[0].split()[1])


def close_times(
    socks: list[socket.socket], since_s: float, trickle: dict[socket.socket, bytes] | None = None
) -> list[float]:
    """Seconds from `since_s` until the receiver closed each of `socks` (at most
    CLOSED_WITHIN_S), sending one more byte of `trickle[sock]` each time round meanwhile."""
    trickle = dict(trickle or {})
    closed: dict[socket.socket, float] = {}
    while len(closed) < len(socks) and time.monotonic() < since_s + CLOSED_WITHIN_S:
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.1)
        for sock in readable:
            closed[sock] = time.monotonic() - since_s
            assert received(sock) == b"", "the receiver answered a half-sent request"
        for sock, rest in trickle.items():
            if sock not in closed and rest:
                sock.sendall(rest[:1])
                trickle[sock] = rest[1:]
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} still open"
    return [closed[sock] for sock in socks]


def received(sock: socket.socket) -> bytes:
    """What a closed socket still had to read (a reset, after we sent into it, is a close)."""
    try:
        return sock.recv(1024)
    except ConnectionResetError:
        return b""


PARTIAL = {
    "nothing at all": b"",
    "half a request line": f"GET {PATH}?SMSID=r".encode(),
    "a request line and one header": f"GET {PATH} HTTP/1.1\r\nHost: receiver\r\n".encode(),
}


def test_connections_that_do_not_complete_their_headers_are_closed_and_pushes_go_on(
    make_settings, tmp_path
):
    # given a receiver with a 0.5 s header timeout
    with receiver(make_settings(), tmp_path) as port:
        # when connections send part of a request and then nothing (or a byte at a time)
        opened_s = time.monotonic()
        stalled = [(connect(port), PARTIAL[name]) for name in PARTIAL for _ in range(10)]
        for sock, partial in stalled:
            sock.sendall(partial)
        trickling = connect(port)
        socks = [sock for sock, _ in stalled] + [trickling]
        # expect each closed by the receiver, about the timeout after it opened
        took_s = close_times(socks, opened_s, {trickling: request("slow")})
        assert all(EARLIEST_S <= s < CLOSED_WITHIN_S for s in took_s), took_s
        # and a push on a connection of its own answered as ever
        assert get(f"http://127.0.0.1:{port}{PATH}", push_params("fine", OA)).status == 200


@pytest.mark.parametrize("pipelined", [False, True], ids=["after", "with the first request"])
def test_a_next_request_left_half_sent_on_a_kept_alive_connection_is_closed(
    make_settings, tmp_path, pipelined
):
    # given a kept-alive connection that had one push answered
    with receiver(make_settings(), tmp_path) as port:
        sock = connect(port)
        half = f"GET {PATH}?SMSID=second".encode()
        # when the next request's first bytes come (after the answer, or along with the
        # first request) and the rest never does
        sent_s = time.monotonic()
        sock.sendall(request("first") + (half if pipelined else b""))
        assert read_response(sock) == 200
        if not pipelined:
            sent_s = time.monotonic()
            sock.sendall(half)
        # expect the connection closed about the timeout after those bytes
        [took_s] = close_times([sock], sent_s)
        assert EARLIEST_S <= took_s < CLOSED_WITHIN_S


def test_a_kept_alive_connection_idle_between_requests_stays_open(make_settings, tmp_path):
    # given a kept-alive connection that had one push answered
    with receiver(make_settings(), tmp_path) as port:
        sock = connect(port)
        sock.sendall(request("first"))
        assert read_response(sock) == 200
        # when it sends nothing for three header timeouts
        sock.settimeout(3 * HEADER_TIMEOUT_S)
        # expect it left open (an idle connection is the keep-alive timeout's, 75 s) ...
        with pytest.raises(TimeoutError):
            sock.recv(1)
        # ... and its next push answered
        sock.settimeout(10)
        sock.sendall(request("second"))
        assert read_response(sock) == 200
