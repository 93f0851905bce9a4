"""The push tokens are secrets: a real `esms-callbacks receive` never writes either of them.

Given a receiver with a current and a previous token, logging everything (DEBUG), when it gets
the requests that make it (or aiohttp under it) write lines, expect neither token anywhere in
its output; and the CLI's refusal to start says why without them.
"""

from __future__ import annotations

import socket
import subprocess
import sys

from bench.harness import receiver_command
from esms_callbacks.cli.processes import ROOT, Child, free_port, stop_all
from tests.helpers import wait_until
from tests.procs import settings_env
from tests.receiving import TOKEN, get, push_params

OA = "1397492183140006179"
PREVIOUS = "previous-token-9876543210zyxw"


def send_raw(port: int, data: bytes) -> bytes:
    """Send `data` as is (what an HTTP client would refuse to) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        return sock.recv(4096)


def test_neither_token_reaches_the_receiver_s_output(make_settings, tmp_path):
    # given a receiver with both tokens, logging at DEBUG
    port = free_port()
    env = settings_env(
        make_settings(), ESMS_PUSH_TOKEN=TOKEN, ESMS_PUSH_TOKEN_PREVIOUS=PREVIOUS, LOG_LEVEL="DEBUG"
    )
    child = Child("receiver", receiver_command(port), env, tmp_path / "receiver.log")
    base = f"http://127.0.0.1:{port}"
    try:
        child.wait_ready(timeout_s=30)
        wait_until(lambda: get(f"{base}/esms/health").status == 200, 10, "up")
        # when it gets a wrong token, malformed pushes (one its HTTP parser refuses, quoting
        # the request line), and good pushes with each token; then stops
        answers = [
            get(f"{base}/esms/push/wrong-token-0123456789", push_params("w", OA)).status,
            get(f"{base}/esms/push/{TOKEN}", {"SMSID": "m", "SendStatus": "5"}).status,
            get(f"{base}/esms/push/{PREVIOUS}", {"SMSID": "m", "SendStatus": "5"}).status,
            get(f"{base}/esms/push/{TOKEN}", push_params("good", OA)).status,
            get(f"{base}/esms/push/{PREVIOUS}", push_params("also-good", OA)).status,
        ]
        for token in (TOKEN, PREVIOUS):
            line = f"GET /esms/push/{token}?SMSID=\x01 HTTP/1.1\r\nHost: r\r\n\r\n".encode()
            assert b" 400 " in send_raw(port, line)[:20]
            too_long = f"GET /esms/push/{token}?SMSID={'r' * 70_000} HTTP/1.1\r\n\r\n".encode()
            assert b" 400 " in send_raw(port, too_long)[:20]
    finally:
        stop_all([child])
    log = child.log
    # expect the answers as the contract says, and the lines they made written, without a token
    assert answers == [404, 400, 400, 200, 200]
    assert "malformed push" in log and "Error handling request" in log
    assert TOKEN not in log and PREVIOUS not in log


def test_the_cli_s_refusal_to_start_names_the_problem_not_the_tokens(make_settings):
    # given a previous token equal to the token
    env = settings_env(make_settings(), ESMS_PUSH_TOKEN=TOKEN, ESMS_PUSH_TOKEN_PREVIOUS=TOKEN)
    # when `esms-callbacks receive` starts
    done = subprocess.run(
        [sys.executable, "-m", "esms_callbacks.cli.main", "receive", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    # expect it refuses, saying why, without the token
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "ESMS_PUSH_TOKEN_PREVIOUS is ESMS_PUSH_TOKEN" in output
    assert TOKEN not in output
