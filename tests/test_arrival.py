"""The simulator times a request when it arrives (the kernel's receipt), not when its handler
gets to run: a stalled server must not make requests that arrived an interval apart look too
close. Real HTTP over real sockets; the stall is the simulator's loop held busy."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from esms_callbacks.simulator import GET_CALLBACK_PATH, RunningSimulator, Simulator, serve_in_thread

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="kernel receive times: Linux"),
    pytest.mark.serial,  # a held loop timed to 0.2 s, gaps to 50 ms: run alone
]

HOLD_S = 0.5
BODY = json.dumps(
    {"ApiKey": "sim-api-key", "SecretKey": "sim-secret-key", "ListRefid": ["r1"], "OAId": "1"}
).encode()
HEAD = (
    f"POST {GET_CALLBACK_PATH} HTTP/1.1\r\nHost: sim\r\nContent-Type: application/json\r\n"
    f"Content-Length: {len(BODY)}\r\n\r\n"
).encode()


@pytest.fixture
def running() -> Iterator[RunningSimulator]:
    with serve_in_thread(Simulator(rate_interval_s=0.05)) as running:
        yield running


def connect(running: RunningSimulator) -> socket.socket:
    return socket.create_connection((running.host, running.port), timeout=5)


def answer_code(sock: socket.socket) -> int:
    """Read one HTTP response (Content-Length framed) and return its eSMS Code."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    code: int = json.loads(body)["Code"]
    return code


def test_a_request_held_up_in_a_stalled_server_is_timed_when_it_arrived(
    running: RunningSimulator,
) -> None:
    with connect(running) as sock:
        hold_ends_s = running.hold_loop(HOLD_S)
        sent_s = time.time()
        sock.sendall(HEAD + BODY)
        assert time.time() < hold_ends_s - 0.2, "the machine is too slow for this test"
        assert answer_code(sock) == 100
    request = running.sim.requests[-1]
    assert sent_s <= request.received_at_s < hold_ends_s
    assert request.handler_lag_s > 0.2  # its handler ran once the hold ended


def test_requests_that_arrived_an_interval_apart_pass_even_when_handled_together(
    running: RunningSimulator,
) -> None:
    with connect(running) as first, connect(running) as second:
        hold_ends_s = running.hold_loop(HOLD_S)
        first.sendall(HEAD + BODY)
        time.sleep(0.1)  # two intervals between the two arrivals
        second.sendall(HEAD + BODY)
        assert time.time() < hold_ends_s - 0.2, "the machine is too slow for this test"
        assert (answer_code(first), answer_code(second)) == (100, 100)
    a, b = running.sim.requests
    assert b.received_monotonic_s - a.received_monotonic_s >= 0.1
    # Handled back to back: timed by its handler, the second would have been refused (160).
    assert (b.received_monotonic_s + b.handler_lag_s) - (
        a.received_monotonic_s + a.handler_lag_s
    ) < 0.05


def test_on_a_kept_connection_each_request_is_timed_by_its_own_first_bytes(
    running: RunningSimulator,
) -> None:
    with connect(running) as sock:
        head_sent_s = time.time()
        sock.sendall(HEAD)
        time.sleep(0.1)  # the body follows in a later segment
        body_sent_s = time.time()
        sock.sendall(BODY)
        assert answer_code(sock) == 100
        hold_ends_s = running.hold_loop(HOLD_S)
        second_sent_s = time.time()
        sock.sendall(HEAD + BODY)
        assert answer_code(sock) == 100
    first, second = running.sim.requests
    assert head_sent_s <= first.received_at_s < body_sent_s  # its head, not its body
    # Not the time the first request's body arrived, nor when this one's handler ran.
    assert second_sent_s <= second.received_at_s < hold_ends_s
