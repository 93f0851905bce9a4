"""The aiohttp client against the simulator over real HTTP: the gate, errors, secrets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer

from esms_callbacks.errors import (
    AuthError,
    MalformedResponse,
    NotSent,
    ServerError,
    TransportError,
)
from esms_callbacks.esms.client import MAX_ANSWER_BYTES, CallbackAnswer, EsmsClient
from tests.helpers import SIM_API_KEY, SIM_SECRET_KEY


def ask(
    base_url: str,
    gate=None,
    secret: str = SIM_SECRET_KEY,
    timeout_s: float = 5.0,
    ref_ids=("g1",),
    on_sent=None,
):
    async def go() -> object:
        client = EsmsClient(base_url, SIM_API_KEY, secret, timeout_s)
        try:
            return await client.get_callback(list(ref_ids), "oa1", gate, on_sent)
        finally:
            await client.close()

    return asyncio.run(go())


def test_gate_runs_once_with_a_connection_held_and_before_the_request_arrives(running_sim, sim):
    calls = []

    def gate() -> bool:
        calls.append(len(sim.requests))  # what eSMS had received when the slot was committed
        return True

    answer = ask(running_sim.base_url, gate)
    assert calls == [0]
    assert set(answer.records) == {"g1"}
    assert len(sim.requests) == 1


def test_on_sent_runs_once_after_the_gate_and_before_the_answer(running_sim, sim):
    # given eSMS answering slowly, so "before the answer" is visible
    sim.add_fault("slow", delay_s=0.3)
    calls: list[str] = []

    def gate() -> bool:
        calls.append("gate")
        return True

    sent_at: list[float] = []

    def on_sent() -> None:
        calls.append("sent")
        sent_at.append(time.monotonic())

    # when asked
    answer = ask(running_sim.base_url, gate, on_sent=on_sent)

    # expect the gate, then the request in the socket, then (0.3 s later) the answer
    assert calls == ["gate", "sent"]
    assert time.monotonic() - sent_at[0] >= 0.25
    assert set(answer.records) == {"g1"}


def test_a_closed_gate_sends_nothing(running_sim, sim):
    with pytest.raises(NotSent):
        ask(running_sim.base_url, lambda: False)
    assert sim.requests == []


@pytest.mark.parametrize(
    ("fault", "params", "error"),
    [
        ("http500", {}, ServerError),
        ("html", {}, MalformedResponse),
        ("badjson", {}, MalformedResponse),
        ("reset", {}, TransportError),
        ("slow", {"delay_s": 1.5}, TransportError),
        ("code", {"code": 101}, AuthError),
    ],
)
def test_faults_become_typed_errors_without_the_secret(running_sim, sim, fault, params, error):
    sim.add_fault(fault, **params)
    with pytest.raises(error) as caught:
        ask(running_sim.base_url, timeout_s=1.0)
    assert SIM_SECRET_KEY not in str(caught.value)
    assert SIM_API_KEY not in str(caught.value) + repr(caught.value)


async def _ask_local_app(routes: list[web.RouteDef]) -> tuple[object, list[str]]:
    """Ask an aiohttp app standing in for eSMS; return the outcome and the paths it saw."""
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    async with TestServer(app) as server:
        client = EsmsClient(str(server.make_url("")), SIM_API_KEY, SIM_SECRET_KEY, 5.0)
        try:
            return await client.get_callback(["g1"], "oa1"), seen
        except Exception as exc:
            return exc, seen
        finally:
            await client.close()


def test_a_redirect_is_not_followed_so_the_credentials_stay_put():
    async def moved(_: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect("/elsewhere")

    async def elsewhere(_: web.Request) -> web.StreamResponse:
        return web.json_response({"Code": 100, "Data_callback": []})

    outcome, seen = asyncio.run(
        _ask_local_app(
            [web.post("/ZaloCallback/GetCallback", moved), web.post("/elsewhere", elsewhere)]
        )
    )
    assert isinstance(outcome, ServerError) and "HTTP 307" in str(outcome)
    assert seen == ["/ZaloCallback/GetCallback"]


@pytest.mark.parametrize("chunked", [False, True])
def test_an_answer_too_large_is_refused(chunked):
    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        if chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = MAX_ANSWER_BYTES + 1
        await response.prepare(request)
        block = b"x" * 1024 * 1024
        for _ in range(MAX_ANSWER_BYTES // len(block) + 1):
            await response.write(block)
        return response

    outcome, _ = asyncio.run(_ask_local_app([web.post("/ZaloCallback/GetCallback", huge)]))
    assert isinstance(outcome, MalformedResponse) and "too large" in str(outcome)


def test_a_gate_closed_on_a_kept_connection_sends_nothing_and_the_next_request_goes(
    running_sim, sim
):
    # given a client that has asked once (its connection kept open)
    async def go() -> CallbackAnswer:
        client = EsmsClient(running_sim.base_url, SIM_API_KEY, SIM_SECRET_KEY, 5.0)
        try:
            await client.get_callback(["k1"], "oa1")
            # when the next request's gate says no: NotSent, not a transport error
            with pytest.raises(NotSent):
                await client.get_callback(["k2"], "oa1", lambda: False)
            # and the one after it goes as usual
            return await client.get_callback(["k3"], "oa1", lambda: True)
        finally:
            await client.close()

    answer = asyncio.run(go())
    # expect eSMS to have received the first and the third only
    assert [r.ref_count_sent for r in sim.requests] == [1, 1]
    assert set(answer.records) == {"k3"}


def test_a_gate_that_fails_raises_its_own_error_and_sends_nothing(running_sim, sim):
    # given a gate whose commit cannot reach Redis
    def gate() -> bool:
        raise redis.ConnectionError("Redis is down")

    # expect that error (which the drain task retries), not an eSMS transport failure
    with pytest.raises(redis.ConnectionError):
        ask(running_sim.base_url, gate)
    assert sim.requests == []


def test_no_byte_of_the_request_reaches_the_socket_before_the_gate_opens():
    # given a plain TCP server that counts every byte it receives
    received = bytearray()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    seen_at_gate: list[int] = []

    def gate() -> bool:
        time.sleep(0.05)  # room for any byte already written (headers) to arrive
        seen_at_gate.append(len(received))
        return False

    # when a request is asked with a gate that holds it back
    try:
        with pytest.raises(NotSent):
            ask(f"http://127.0.0.1:{port}", gate)
        server.join(timeout=5)
    finally:
        listener.close()

    # expect the connection made and closed with nothing written: not even the headers
    assert seen_at_gate == [0]
    assert not server.is_alive() and bytes(received) == b""
