"""The simulator's pushes to a CallbackUrl, exercised over real HTTP against a real receiver."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bench.harness import simulator_process
from esms_callbacks.simulator import PushSettings, RunningSimulator, Simulator, serve_in_thread
from esms_callbacks.simulator.outcomes import build_record
from esms_callbacks.simulator.remote import RemoteSimulator

REPO_ROOT = Path(__file__).resolve().parents[1]
OA_ID = "1397492183140006179"
# A real ZNS push from eSMS: the names, their order and the error_info encoding to match.
SAMPLE_QUERY = (
    "SMSID=f66545d2-c7e2-4603-984e-d2238c363c8292&SendFailed=1&SendStatus=5&SendSuccess=0"
    "&TotalPrice=0.0000&TotalReceiver=1&TotalSent=0&RequestId=&TypeId=25&telcoid=2"
    "&phonenumber=0901888484&partnerids="
    '&error_info="{\\"error\\":-114,\\"message\\":\\"User is inactive, or reject the message, '
    'or using an outdated Zalo version, or other internal errors\\"}"'
    "&oaid=1397492183140006179&tempid=2056446"
)
SAMPLE_NAMES = [pair.partition("=")[0] for pair in SAMPLE_QUERY.split("&")]
# Small enough that retries take milliseconds; tests that need otherwise say so.
FAST = PushSettings(timeout_s=2.0, retries=5, retry_delay_s=0.01)
# Clock slack for lower bounds: asyncio may wake a timer a hair early.
EPSILON_S = 0.005
DONE_WITHIN_S = 10.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Hit:
    """One GET the receiver got."""

    received_s: float  # time.monotonic()
    path: str
    raw_query: str  # as sent, still URL-encoded
    params: dict[str, str]

    def names(self) -> list[str]:
        return [pair.partition("=")[0] for pair in self.raw_query.split("&")]


class Receiver:
    """A customer's CallbackUrl: records every GET; the first `fail_first` fail as `failure`
    ("500", or "slow": answer 200 only after `slow_s`, past the pusher's timeout)."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.failure = "500"
        self.slow_s = 0.5
        self._hits: list[Hit] = []
        self._lock = threading.Lock()

    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        hit = Hit(
            time.monotonic(),
            request.path,
            request.rel_url.raw_query_string,
            dict(request.query),
        )
        with self._lock:
            failing = len(self._hits) < self.fail_first
            self._hits.append(hit)
        if failing and self.failure == "slow":
            await asyncio.sleep(self.slow_s)
        elif failing:
            return web.Response(status=500, text="boom")
        return web.Response(text="ok")


@contextmanager
def serve_app(app: web.Application) -> Iterator[str]:
    """Serve `app` on a free port on its own loop in a daemon thread; yield its base URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    async def stop() -> None:
        await runner.cleanup()
        # Handlers still sleeping (a "slow" failure) are cancelled, not left to the collector.
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    thread = threading.Thread(target=loop.run_forever, name="push-receiver", daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@pytest.fixture
def running() -> Iterator[RunningSimulator]:
    with serve_in_thread(Simulator(rate_interval_s=0, policy="sent"), push_settings=FAST) as r:
        yield r


@pytest.fixture
def remote(running: RunningSimulator) -> RemoteSimulator:
    return RemoteSimulator(running.base_url)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def receiver_url(receiver: Receiver) -> Iterator[str]:
    with serve_app(receiver.app()) as base_url:
        yield base_url + "/receivecallback/"


def wait_until_done(remote: RemoteSimulator, queued: int) -> dict[str, Any]:
    """Poll the push counts until `queued` pushes are all delivered or given up."""
    deadline = time.monotonic() + DONE_WITHIN_S
    while time.monotonic() < deadline:
        counts = remote.pushes()
        if counts["queued"] == queued and counts["waiting"] == 0:
            return counts
        time.sleep(0.01)
    raise AssertionError(f"pushes not done within {DONE_WITHIN_S} s: {remote.pushes()}")


def post(url: str, body: object) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with _OPENER.open(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get_callback(running: RunningSimulator, ref_ids: list[str]) -> list[dict[str, Any]]:
    body = {
        "ApiKey": running.sim.api_key,
        "SecretKey": running.sim.secret_key,
        "ListRefid": ref_ids,
        "OAId": OA_ID,
    }
    _, answer = post(running.callback_url, body)
    assert answer["Code"] == 100, answer
    found: list[dict[str, Any]] = answer["Data_callback"]
    return found


def by_ref(hits: list[Hit]) -> dict[str, Hit]:
    return {hit.params["SMSID"]: hit for hit in hits}


def test_the_sample_encodes_error_info_as_a_json_string() -> None:
    value = dict(pair.partition("=")[::2] for pair in SAMPLE_QUERY.split("&"))["error_info"]

    assert json.dumps(json.loads(value)) == value


def test_a_push_is_shaped_like_the_esms_sample(
    running: RunningSimulator, remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    running.sim.script("r-failed", ["failed"])
    running.sim.script("r-rejected", ["rejected"])
    running.sim.script("r-sent", ["sent"])
    refs = ["r-failed", "r-rejected", "r-sent"]

    assert remote.push(receiver_url + "?token=abc", OA_ID, refs) == 3
    counts = wait_until_done(remote, 3)

    assert counts["delivered"] == 3 and counts["answers"] == {"200": 3}
    hits = by_ref(receiver.hits())
    for ref_id in refs:
        hit = hits[ref_id]
        record = build_record(ref_id, OA_ID, running.sim.scripts_of([ref_id])[0][-1])
        assert record is not None
        assert hit.path == "/receivecallback/"
        assert hit.names() == ["token", *SAMPLE_NAMES], "the URL's own query comes first"
        assert hit.params["token"] == "abc" and hit.params["oaid"] == OA_ID
        assert re.fullmatch(r"\d+\.\d{4}", hit.params["TotalPrice"])
        assert float(hit.params["TotalPrice"]) == record["TotalPrice"]
        assert hit.params["RequestId"] == "" and hit.params["TotalReceiver"] == "1"
        assert hit.params["telcoid"] == str(record["Telcoid"])
        assert hit.params["tempid"] == record["ZnsTempId"]
        assert hit.params["partnerids"] == record["Partnerids"]
        if record["ErrorInfo"]:
            assert hit.params["error_info"].startswith('"{\\"error\\":')
            assert json.loads(hit.params["error_info"]) == record["ErrorInfo"]
            assert "%22" in hit.raw_query and '"' not in hit.raw_query, "sent URL-encoded"
        else:
            assert hit.params["error_info"] == ""
    assert [hits[r].params["SendStatus"] for r in refs] == ["5", "4", "5"]
    assert [hits[r].params["SendFailed"] for r in refs] == ["1", "1", "0"]
    assert [hits[r].params["SendSuccess"] for r in refs] == ["0", "0", "1"]


def test_a_push_and_getcallback_agree_and_the_push_asks_nothing(
    running: RunningSimulator, remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    sim = running.sim
    sim.set_policy("mixed")
    refs = [f"agree-{n}" for n in range(30)]  # a mix of the policy's scripts
    for ref_id, outcome in zip(refs[:3], ["failed", "rejected", "sent"], strict=True):
        sim.script(ref_id, [outcome])

    queued = remote.push(receiver_url, OA_ID, refs)
    wait_until_done(remote, queued)

    assert all(sim.asked(ref_id) == 0 for ref_id in refs), "pushing must not count as asking"
    pushed = by_ref(receiver.hits())
    # Ask until every script has reached its end, as the final push already has.
    longest = max(len(script) for script in sim.scripts_of(refs))
    for _ in range(longest):
        answered = {record["SMSID"]: record for record in get_callback(running, refs)}
    assert set(pushed) == set(answered) and queued == len(refs)
    for ref_id, hit in pushed.items():
        record = answered[ref_id]
        assert hit.params["SendStatus"] == str(record["SendStatus"])
        assert hit.params["phonenumber"] == record["PhoneNumber"]
        assert hit.params["telcoid"] == str(record["Telcoid"])
        assert hit.params["TypeId"] == str(record["TypeId"])
        assert hit.params["error_info"] == (
            json.dumps(record["ErrorInfo"]) if record["ErrorInfo"] else ""
        )


def test_pushes_leave_the_script_position_alone(
    running: RunningSimulator, remote: RemoteSimulator, receiver_url: str
) -> None:
    running.sim.script("p1", ["pending7", "sent"])

    remote.push(receiver_url, OA_ID, ["p1"], statuses="all")
    wait_until_done(remote, 2)

    assert get_callback(running, ["p1"])[0]["SendStatus"] == 7
    assert get_callback(running, ["p1"])[0]["SendStatus"] == 5


def test_final_pushes_the_last_outcome_and_all_pushes_each_known_one(
    running: RunningSimulator, remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    running.sim.script("steps", ["missing", "pending1", "pending7", "sent"])
    running.sim.script("gone", ["sent", "missing"])

    assert remote.push(receiver_url, OA_ID, ["steps", "gone"]) == 1
    wait_until_done(remote, 1)
    assert [h.params["SendStatus"] for h in receiver.hits()] == ["5"]

    assert remote.push(receiver_url, OA_ID, ["steps"], statuses="all") == 3
    wait_until_done(remote, 4)
    statuses = [h.params["SendStatus"] for h in receiver.hits()[1:]]
    assert sorted(statuses) == ["1", "5", "7"], "one push per known step; 'missing' is skipped"


def test_a_failed_delivery_is_retried_until_answered_200(
    remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    receiver.fail_first = 2

    remote.push(receiver_url, OA_ID, ["r1"])
    counts = wait_until_done(remote, 1)

    assert counts["answers"] == {"500": 2, "200": 1}
    assert (counts["attempts"], counts["retried"], counts["delivered"]) == (3, 2, 1)
    assert counts["given_up"] == 0 and counts["in_flight"] == 0
    hits = receiver.hits()
    assert len(hits) == 3 and len({h.raw_query for h in hits}) == 1, "the same push each time"


def test_retries_stop_after_the_configured_count(
    remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    receiver.fail_first = 1000
    assert remote.configure_push(retries=2)["retries"] == 2

    remote.push(receiver_url, OA_ID, ["r1", "r2"])
    counts = wait_until_done(remote, 2)

    assert counts["answers"] == {"500": 6}
    assert (counts["attempts"], counts["retried"], counts["given_up"]) == (6, 4, 2)
    assert counts["delivered"] == 0
    # A sleep, not a condition: what is checked is that nothing comes; a retry that should
    # not be would have come within a retry delay, and this waits five.
    time.sleep(5 * FAST.retry_delay_s)
    assert len(receiver.hits()) == 6, "nothing after giving up"


def test_retries_wait_the_retry_delay(
    remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    receiver.fail_first = 2
    remote.configure_push(retry_delay_s=0.1)

    remote.push(receiver_url, OA_ID, ["r1"])
    wait_until_done(remote, 1)

    # Each retry starts at least retry_delay_s after the failure was answered.
    times = [hit.received_s for hit in receiver.hits()]
    assert len(times) == 3
    assert all(later - earlier >= 0.1 - EPSILON_S for earlier, later in pairwise(times))


def test_a_timeout_is_retried(
    remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    receiver.fail_first, receiver.failure, receiver.slow_s = 1, "slow", 0.5
    remote.configure_push(timeout_s=0.1)

    remote.push(receiver_url, OA_ID, ["r1"])
    counts = wait_until_done(remote, 1)

    # At least the slow answer timed out (a loaded machine may time out more).
    assert counts["answers"]["error"] >= 1 and counts["answers"]["200"] == 1
    assert counts["delivered"] == 1


def test_a_refused_connection_is_retried_then_given_up(remote: RemoteSimulator) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    remote.configure_push(retries=1)

    remote.push(f"http://127.0.0.1:{port}/cb", OA_ID, ["r1"])
    counts = wait_until_done(remote, 1)

    assert counts["answers"] == {"error": 2} and counts["given_up"] == 1


def test_delay_and_rate_spread_the_deliveries(
    remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    delay_s, rate_per_s, refs = 0.1, 20.0, [f"paced-{n}" for n in range(5)]
    before_s = time.monotonic()

    remote.push(receiver_url, OA_ID, refs, delay_s=delay_s, rate_per_s=rate_per_s)
    wait_until_done(remote, len(refs))

    # The k-th delivery cannot start before delay + k/rate: lateness only adds.
    times = sorted(hit.received_s - before_s for hit in receiver.hits())
    earliest = [delay_s + k / rate_per_s - EPSILON_S for k in range(len(refs))]
    assert len(times) == len(refs)
    assert all(t >= bound for t, bound in zip(times, earliest, strict=True)), times
    # Started in the order asked.
    assert [h.params["SMSID"] for h in receiver.hits()] == refs


def test_unpaced_pushes_all_arrive(
    remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    refs = [f"many-{n}" for n in range(60)]  # more than are let in flight at once

    assert remote.push(receiver_url, OA_ID, refs) == 60
    counts = wait_until_done(remote, 60)

    assert counts["delivered"] == 60 and counts["attempts"] == 60
    assert Counter(h.params["SMSID"] for h in receiver.hits()) == Counter(refs)


def test_reset_drops_queued_pushes_and_zeroes_the_counts(
    running: RunningSimulator, remote: RemoteSimulator, receiver: Receiver, receiver_url: str
) -> None:
    remote.push(receiver_url, OA_ID, ["r1", "r2", "r3"], delay_s=0.5)
    waiting = remote.pushes()
    assert (waiting["queued"], waiting["waiting"]) == (3, 3)

    assert post(running.base_url + "/_sim/reset", {}) == (200, {"ok": True})

    counts = remote.pushes()
    assert counts == {
        "queued": 0,
        "attempts": 0,
        "delivered": 0,
        "retried": 0,
        "given_up": 0,
        "in_flight": 0,
        "waiting": 0,
        "answers": {},
    }
    # A sleep, not a condition: what is checked is that nothing comes; past the 0.5 s delay
    # the dropped pushes would have gone by now.
    time.sleep(0.6)
    assert receiver.hits() == [] and remote.pushes()["attempts"] == 0


def test_push_config_round_trip_and_kept_on_reset(remote: RemoteSimulator) -> None:
    expected = {"timeout_s": 0.5, "retries": 3, "retry_delay_s": 0.25}

    assert remote.configure_push(**expected) == expected
    remote.reset()

    assert remote.configure_push() == expected


GOOD_PUSH = {"url": "http://127.0.0.1:9/cb", "oa_id": OA_ID, "ref_ids": ["r1"]}


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("/push", {**GOOD_PUSH, "url": "ftp://127.0.0.1/cb"}, '"url"'),
        ("/push", {**GOOD_PUSH, "url": "/relative/path"}, '"url"'),
        ("/push", {**GOOD_PUSH, "url": 7}, '"url"'),
        ("/push", {"oa_id": OA_ID, "ref_ids": ["r1"]}, '"url"'),
        ("/push", {**GOOD_PUSH, "oa_id": ""}, '"oa_id"'),
        ("/push", {**GOOD_PUSH, "ref_ids": []}, '"ref_ids"'),
        ("/push", {**GOOD_PUSH, "ref_ids": "r1"}, '"ref_ids"'),
        ("/push", {**GOOD_PUSH, "ref_ids": ["r1", ""]}, '"ref_ids"'),
        ("/push", {**GOOD_PUSH, "delay_s": -1}, '"delay_s"'),
        ("/push", {**GOOD_PUSH, "rate_per_s": "fast"}, '"rate_per_s"'),
        ("/push", {**GOOD_PUSH, "statuses": "some"}, '"statuses"'),
        ("/push", {**GOOD_PUSH, "callback": "x"}, "'callback'"),
        ("/push_config", {"retries": -1}, "retries"),
        ("/push_config", {"retries": 1.5}, "retries"),
        ("/push_config", {"timeout_s": 0}, "timeout_s"),
        ("/push_config", {"retry_delay_s": "soon"}, "retry_delay_s"),
        ("/push_config", {"bogus": 1}, "'bogus'"),
    ],
)
def test_bad_push_input_is_refused_with_a_reason(
    running: RunningSimulator, remote: RemoteSimulator, path: str, body: object, named: str
) -> None:
    status, answer = post(running.base_url + "/_sim" + path, body)

    assert status == 400 and named in answer["error"], answer
    assert remote.pushes()["queued"] == 0
    assert remote.configure_push() == {"timeout_s": 2.0, "retries": 5, "retry_delay_s": 0.01}


def test_command_line_push_settings() -> None:
    options = ("--push-timeout", "1.5", "--push-retries", "2", "--push-retry-delay", "0.5")
    with simulator_process("--rate-interval", "0", *options) as remote:
        assert remote.configure_push() == {"timeout_s": 1.5, "retries": 2, "retry_delay_s": 0.5}

    refused = subprocess.run(
        [sys.executable, "-m", "esms_callbacks.simulator", "--port", "0", "--push-retries", "-1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert refused.returncode == 2 and "retries" in refused.stderr


def test_getcallback_still_answers_while_pushing(
    running: RunningSimulator, remote: RemoteSimulator, receiver_url: str
) -> None:
    remote.push(receiver_url, OA_ID, [f"busy-{n}" for n in range(20)], rate_per_s=200)

    assert len(get_callback(running, ["busy-0"])) == 1
    wait_until_done(remote, 20)
