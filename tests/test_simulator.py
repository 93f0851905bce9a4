"""The eSMS GetCallback simulator, exercised over real HTTP."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from esms_callbacks.simulator import GET_CALLBACK_PATH, RunningSimulator, Simulator, serve_in_thread
from esms_callbacks.simulator.outcomes import build_record, default_script
from esms_callbacks.simulator.remote import RemoteSimulator
from esms_callbacks.simulator.window_check import window_check

REPO_ROOT = Path(__file__).resolve().parents[1]
OA_ID = "1090257973118325189"
# eSMS's sample record (docs/esms/getcallback.md): field names and JSON types.
SAMPLE_TYPES: dict[str, type | tuple[type, ...]] = {
    "SMSID": str,
    "SendFailed": int,
    "SendSuccess": int,
    "SendStatus": int,
    "TotalPrice": float,
    "TotalReceiver": int,
    "TotalSent": int,
    "RequestId": type(None),
    "TypeId": int,
    "Telcoid": int,
    "PhoneNumber": str,
    "CallbackUrl": str,
    "Partnerids": str,
    "ErrorInfo": (str, type(None)),
    "OAId": str,
    "ZnsTempId": str,
}
SAMPLE_ERROR_INFO = (
    '{"error":-124,"message":"Access token is invalid"}'
    "Object reference not set to an instance of an object."
)
# Never go through a proxy from the environment to reach 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    status: int
    content_type: str
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def http(url: str, body: object = None, *, raw: bytes | None = None, method: str = "") -> Reply:
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method or ("POST" if data is not None else "GET")
    )
    request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=5) as response:
            return Reply(
                response.status, response.headers["Content-Type"], response.read().decode()
            )
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers["Content-Type"], exc.read().decode())


def callback_body(ref_ids: list[str], **overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "ApiKey": "sim-api-key",
        "SecretKey": "sim-secret-key",
        "ListRefid": ref_ids,
        "OAId": OA_ID,
    }
    body.update(overrides)
    return body


def ask(running: RunningSimulator, ref_ids: list[str], **overrides: object) -> Reply:
    return http(running.base_url + GET_CALLBACK_PATH, callback_body(ref_ids, **overrides))


def ask_at(running: RunningSimulator, received_monotonic_s: float, ref_ids: list[str]) -> Reply:
    """Ask as `ask` does, with the receipt time passed in rather than taken by the HTTP
    handler: the simulator's rate clock moves on without the test sleeping."""
    raw = json.dumps(callback_body(ref_ids)).encode()
    answer = running.sim.receive(raw, time.time(), received_monotonic_s)
    assert answer.fault is None, answer.fault
    return Reply(200, "application/json", json.dumps(answer.payload))


def just_after_the_interval(running: RunningSimulator) -> float:
    """A receipt time just past the rate interval after the last request's."""
    return running.sim.requests[-1].received_monotonic_s + running.sim.rate_interval_s + 0.01


def records(reply: Reply) -> list[dict[str, object]]:
    data = reply.json()
    assert data["Code"] == 100, data
    found = data["Data_callback"]
    assert isinstance(found, list)
    return found


@pytest.fixture
def running() -> Iterator[RunningSimulator]:
    with serve_in_thread(Simulator(rate_interval_s=0)) as running:
        yield running


def test_success_answer_is_shaped_like_the_esms_sample(running: RunningSimulator) -> None:
    running.sim.script("r-sent", ["sent"])
    running.sim.script("r-failed", ["failed"])

    reply = ask(running, ["r-sent", "r-failed"])

    assert reply.status == 200 and reply.content_type.startswith("application/json")
    data = reply.json()
    assert data["Code"] == 100 and isinstance(data["Code"], int)
    assert data["Message"] == "Success"
    sent, failed = records(reply)
    for record in (sent, failed):
        assert list(record) == list(SAMPLE_TYPES)
        for field, expected_type in SAMPLE_TYPES.items():
            assert isinstance(record[field], expected_type), (field, record[field])
        assert record["OAId"] == OA_ID and record["TypeId"] in (24, 25)
        assert record["Telcoid"] in range(1, 8) and re.fullmatch(
            r"0\d{9}", str(record["PhoneNumber"])
        )
    assert sent["SMSID"] == "r-sent" and sent["SendStatus"] == 5
    assert (sent["SendSuccess"], sent["SendFailed"]) == (1, 0)
    assert sent["ErrorInfo"] in (None, "")
    assert failed["SendStatus"] == 5 and (failed["SendSuccess"], failed["SendFailed"]) == (0, 1)
    assert isinstance(failed["ErrorInfo"], str) and failed["ErrorInfo"].startswith('{"error":')


def test_records_are_deterministic_per_refid() -> None:
    assert build_record("x-1", OA_ID, "sent") == build_record("x-1", OA_ID, "sent")
    failed = [build_record(f"f-{i}", OA_ID, "failed") or {} for i in range(50)]
    assert SAMPLE_ERROR_INFO in {record["ErrorInfo"] for record in failed}


def test_scripts_advance_and_the_last_outcome_sticks(running: RunningSimulator) -> None:
    running.sim.script("r1", ["pending1", "pending2", "pending7", "sent"])

    statuses = [records(ask(running, ["r1"]))[0]["SendStatus"] for _ in range(6)]

    assert statuses == [1, 2, 7, 5, 5, 5]
    assert running.sim.asked("r1") == 6


def test_rejected_has_status_4_and_a_timestamp_tail(running: RunningSimulator) -> None:
    running.sim.script("r-rej", ["rejected"])

    (record,) = records(ask(running, ["r-rej"]))

    assert record["SendStatus"] == 4
    assert re.search(r"____\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}$", str(record["ErrorInfo"]))


def test_missing_refids_are_absent_and_order_is_kept(running: RunningSimulator) -> None:
    for ref_id in ("a", "c"):
        running.sim.script(ref_id, ["sent"])
    running.sim.script("b", ["missing", "sent"])

    first = records(ask(running, ["c", "b", "a"]))
    second = records(ask(running, ["c", "b", "a"]))

    assert [r["SMSID"] for r in first] == ["c", "a"]
    assert [r["SMSID"] for r in second] == ["c", "b", "a"]
    assert running.sim.requests[0].record_count == 2


def test_refids_past_max_refs_are_dropped_silently() -> None:
    with serve_in_thread(Simulator(rate_interval_s=0, max_refs=3, policy="sent")) as running:
        reply = ask(running, [f"t-{i}" for i in range(5)])

        assert [r["SMSID"] for r in records(reply)] == ["t-0", "t-1", "t-2"]
        (logged,) = running.sim.requests
        assert (logged.ref_count_sent, logged.ref_count_answered) == (5, 3)
        assert running.sim.asked("t-3") == 0


@pytest.mark.parametrize(
    "overrides",
    [{"SecretKey": "wrong"}, {"ApiKey": "wrong"}, {"ApiKey": None}, {"SecretKey": 123}],
)
def test_wrong_credentials_get_101(running: RunningSimulator, overrides: dict[str, object]) -> None:
    reply = ask(running, ["r1"], **overrides)

    assert reply.status == 200 and reply.json()["Code"] == 101
    assert running.sim.requests[-1].api_key_ok is False
    assert running.sim.asked("r1") == 0


@pytest.mark.parametrize(
    "overrides",
    [{"ListRefid": "r1"}, {"ListRefid": ["r1", 2]}, {"ListRefid": []}, {"OAId": None}],
)
def test_bad_input_gets_99(running: RunningSimulator, overrides: dict[str, object]) -> None:
    assert ask(running, ["r1"], **overrides).json()["Code"] == 99


def test_body_that_is_not_json_gets_99(running: RunningSimulator) -> None:
    reply = http(running.base_url + GET_CALLBACK_PATH, raw=b"ApiKey=x&SecretKey=y")

    assert reply.status == 200 and reply.json()["Code"] == 99
    assert running.sim.requests[-1].api_key_ok is False


def test_two_quick_requests_get_160_and_the_log_measures_the_gap() -> None:
    with serve_in_thread(Simulator(rate_interval_s=0.5, policy="sent")) as running:
        first, second = ask(running, ["r1"]), ask(running, ["r1"])
        third = ask_at(running, just_after_the_interval(running), ["r1"])

        assert [r.json()["Code"] for r in (first, second, third)] == [100, 160, 100]
        log = running.sim.requests
        assert log[1].received_monotonic_s - log[0].received_monotonic_s < 0.5
        assert log[2].received_monotonic_s - log[1].received_monotonic_s >= 0.5
        stats = running.sim.stats()
        assert stats["min_gap_s"] == pytest.approx(
            log[1].received_monotonic_s - log[0].received_monotonic_s
        )
        assert stats["codes"] == {"100": 2, "160": 1}
        assert running.sim.asked("r1") == 2  # the 160 answer looked nothing up


def test_closed_window_gets_99() -> None:
    with serve_in_thread(Simulator(rate_interval_s=0, is_open=lambda: False)) as running:
        data = ask(running, ["r1"]).json()

        assert data["Code"] == 99 and "window" in str(data["Message"])
        assert running.sim.asked("r1") == 0


def test_window_check_follows_the_window_in_vietnam_time() -> None:
    at_0130_vn = datetime(2024, 4, 23, 18, 30, tzinfo=UTC)
    at_0230_vn = datetime(2024, 4, 23, 19, 30, tzinfo=UTC)

    open_at_0130 = window_check("01:00-02:00", now=lambda: at_0130_vn)
    open_at_0230 = window_check("01:00-02:00", now=lambda: at_0230_vn)
    closed = window_check("closed")

    assert window_check("always") is None
    assert open_at_0130 is not None and open_at_0130() is True
    assert open_at_0230 is not None and open_at_0230() is False
    assert closed is not None and closed() is False
    with pytest.raises(ValueError):
        window_check("1am-2am")


def test_http500_fault(running: RunningSimulator) -> None:
    running.sim.add_fault("http500")

    reply = ask(running, ["r1"])

    assert reply.status == 500 and reply.content_type.startswith("text/plain")
    assert ask(running, ["r1"]).json()["Code"] == 100  # only the next request fails
    assert [(r.fault, r.http_status, r.code) for r in running.sim.requests] == [
        ("http500", 500, None),
        (None, 200, 100),
    ]


def test_badjson_fault(running: RunningSimulator) -> None:
    running.sim.add_fault("badjson")

    reply = ask(running, ["r1"])

    assert reply.status == 200 and reply.content_type.startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)


def test_html_fault(running: RunningSimulator) -> None:
    running.sim.add_fault("html")

    reply = ask(running, ["r1"])

    assert reply.status == 200 and reply.content_type.startswith("text/html")
    assert "<html>" in reply.text


@pytest.mark.parametrize("code", [160, 105, 101, 103])
def test_code_fault(running: RunningSimulator, code: int) -> None:
    running.sim.add_fault("code", code=code)

    data = ask(running, ["r1"]).json()

    assert data["Code"] == code and isinstance(data["Message"], str)
    assert running.sim.requests[-1].code == code


def test_slow_fault_answers_normally_after_the_delay(running: RunningSimulator) -> None:
    running.sim.script("r1", ["sent"])
    running.sim.add_fault("slow", delay_s=0.3)

    started = time.monotonic()
    reply = ask(running, ["r1"])

    assert time.monotonic() - started >= 0.3
    assert records(reply)[0]["SendStatus"] == 5
    assert running.sim.requests[-1].fault == "slow"


def test_reset_fault_aborts_the_connection(running: RunningSimulator) -> None:
    running.sim.add_fault("reset")

    with pytest.raises((ConnectionError, urllib.error.URLError)):
        ask(running, ["r1"])

    assert running.sim.requests[-1].http_status is None
    assert ask(running, ["r1"]).json()["Code"] == 100


def test_faults_apply_in_order_and_count(running: RunningSimulator) -> None:
    running.sim.add_fault("code", count=2, code=105)
    running.sim.add_fault("http500")

    statuses = [
        (r.status, r.json()["Code"] if r.status == 200 else None)
        for r in (ask(running, ["r1"]) for _ in range(4))
    ]

    assert statuses == [(200, 105), (200, 105), (500, None), (200, 100)]


def test_bad_fault_parameters_are_refused() -> None:
    sim = Simulator()
    for kind, params in [("nope", {}), ("code", {}), ("slow", {"delay_s": -1}), ("html", {"x": 1})]:
        with pytest.raises(ValueError):
            sim.add_fault(kind, **params)


def failed_share(running: RunningSimulator, requests: int) -> list[int]:
    """Send `requests` asks; return the positions of those that failed (HTTP 500)."""
    return [i for i in range(requests) if ask(running, [f"r-{i}"]).status == 500]


def test_random_fault_rate_hits_about_that_share_reproducibly(running: RunningSimulator) -> None:
    control = running.base_url + "/_sim/fault_rate"
    reply = http(control, {"kind": "http500", "rate": 0.1, "seed": 7})
    assert reply.status == 200 and reply.json() == {"ok": True, "fault_rates": {"http500": 0.1}}

    failed = failed_share(running, 1000)

    assert 70 <= len(failed) <= 130, len(failed)
    log = running.sim.requests
    assert [i for i, r in enumerate(log) if r.fault == "http500"] == failed
    assert {(r.http_status, r.code) for i, r in enumerate(log) if i in failed} == {(500, None)}
    assert running.sim.stats()["faults"] == {"http500": len(failed)}
    # The same seed gives the same hits.
    running.sim.reset()
    http(control, {"kind": "http500", "rate": 0.1, "seed": 7})
    assert failed_share(running, 1000) == failed


def test_random_fault_rate_one_fails_every_request_and_zero_none(
    running: RunningSimulator,
) -> None:
    running.sim.set_fault_rate("code", 1.0, code=160)

    assert {ask(running, ["r1"]).json()["Code"] for _ in range(50)} == {160}
    assert {r.fault for r in running.sim.requests} == {"code"}

    running.sim.set_fault_rate("code", 0, code=160)

    assert {ask(running, ["r1"]).json()["Code"] for _ in range(200)} == {100}
    assert running.sim.fault_rates() == {}


def test_several_random_fault_kinds_share_the_requests(running: RunningSimulator) -> None:
    running.sim.set_fault_rate("html", 0.3, seed=1)
    running.sim.set_fault_rate("http500", 0.2)

    for i in range(500):
        ask(running, [f"r-{i}"])

    faults = Counter(r.fault for r in running.sim.requests)
    assert faults["html"] == pytest.approx(150, abs=35)
    assert faults["http500"] == pytest.approx(100, abs=30)
    assert faults[None] == pytest.approx(250, abs=40)


def test_requests_failed_at_random_move_the_rate_clock() -> None:
    with serve_in_thread(Simulator(rate_interval_s=0.5, policy="sent")) as running:
        running.sim.set_fault_rate("http500", 1.0)
        assert ask(running, ["r1"]).status == 500
        running.sim.set_fault_rate("http500", 0)

        assert ask(running, ["r1"]).json()["Code"] == 160  # the failed request counted
        assert ask_at(running, just_after_the_interval(running), ["r1"]).json()["Code"] == 100


def test_one_shot_faults_come_before_random_ones(running: RunningSimulator) -> None:
    running.sim.set_fault_rate("http500", 1.0)
    running.sim.add_fault("code", code=105)

    assert ask(running, ["r1"]).json()["Code"] == 105
    assert ask(running, ["r1"]).status == 500


def test_reset_turns_random_faults_off(running: RunningSimulator) -> None:
    running.sim.set_fault_rate("reset", 0.5)

    running.sim.reset()

    assert running.sim.fault_rates() == {}
    assert http(running.base_url + "/_sim/config").json()["fault_rates"] == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kind": "http500", "rate": 1.5}, "rate"),
        ({"kind": "http500", "rate": -0.1}, "rate"),
        ({"kind": "http500", "rate": "0.1"}, "rate"),
        ({"kind": "http500", "rate": True}, "rate"),
        ({"kind": "http500"}, "rate"),
        ({"rate": 0.1}, "kind"),
        ({"kind": "boom", "rate": 0.1}, "unknown fault kind"),
        ({"kind": "code", "rate": 0.1}, "code"),
        ({"kind": "slow", "rate": 0.1, "delay_s": -1}, "delay_s"),
        ({"kind": "http500", "rate": 0.1, "count": 2}, "count"),
        ({"kind": "http500", "rate": 0.1, "seed": "x"}, "seed"),
    ],
)
def test_fault_rate_refuses_bad_values_with_a_reason(
    running: RunningSimulator, body: dict[str, object], reason: str
) -> None:
    reply = http(running.base_url + "/_sim/fault_rate", body)

    assert reply.status == 400 and reason in reply.json()["error"], reply.text
    assert running.sim.fault_rates() == {}


def test_fault_rates_may_not_add_up_past_one(running: RunningSimulator) -> None:
    running.sim.set_fault_rate("http500", 0.6)

    reply = http(running.base_url + "/_sim/fault_rate", {"kind": "reset", "rate": 0.5})

    assert reply.status == 400 and "add up" in reply.json()["error"]
    assert running.sim.fault_rates() == {"http500": 0.6}


def test_remote_simulator_sets_fault_rates(running: RunningSimulator) -> None:
    remote = RemoteSimulator(running.base_url)

    assert remote.set_fault_rate("code", 1.0, code=105, seed=3) == {"code": 1.0}
    assert ask(running, ["r1"]).json()["Code"] == 105
    with pytest.raises(ValueError, match="rate"):
        remote.set_fault_rate("http500", 2)


def test_policy_sent_and_mixed(running: RunningSimulator) -> None:
    running.sim.set_policy("sent")
    ref_ids = [f"p-{i}" for i in range(50)]
    assert {r["SendStatus"] for r in records(ask(running, ref_ids))} == {5}

    scripts = Counter(default_script(f"m-{i}", "mixed") for i in range(4000))
    share = {script: count / 4000 for script, count in scripts.items()}
    assert share[("sent",)] == pytest.approx(0.70, abs=0.04)
    assert share[("pending7", "sent")] == pytest.approx(0.10, abs=0.03)
    assert share[("failed",)] == pytest.approx(0.08, abs=0.03)
    assert share[("rejected",)] == pytest.approx(0.04, abs=0.02)
    assert share[("missing", "sent")] == pytest.approx(0.08, abs=0.03)


def test_reset_forgets_log_scripts_faults_and_counts(running: RunningSimulator) -> None:
    sim = running.sim
    sim.script("r1", ["failed"])
    ask(running, ["r1"])
    sim.add_fault("http500")

    sim.reset()

    assert sim.requests == [] and sim.asked("r1") == 0 and sim.pending_faults() == 0


def test_control_api_round_trip(running: RunningSimulator) -> None:
    control = running.base_url + "/_sim"

    assert (
        http(control + "/script", {"ref_id": "c1", "outcomes": ["pending2", "failed"]}).status
        == 200
    )
    assert http(control + "/policy", {"policy": "sent"}).json() == {"ok": True}
    assert http(control + "/fault", {"kind": "code", "code": 160}).json()["pending_faults"] == 1
    config = http(control + "/config", {"max_refs": 2, "rate_interval_s": 0}).json()
    assert config["max_refs"] == 2 and config["policy"] == "sent"

    assert ask(running, ["c1"]).json()["Code"] == 160
    assert records(ask(running, ["c1", "x", "y"]))[0]["SendStatus"] == 2
    assert records(ask(running, ["c1"]))[0]["SendStatus"] == 5

    log = http(control + "/requests").json()
    assert isinstance(log, list) and [e["code"] for e in log] == [160, 100, 100]
    assert (log[1]["ref_count_sent"], log[1]["ref_count_answered"]) == (3, 2)
    assert len(http(control + "/requests?since=2").json()) == 1
    stats = http(control + "/stats").json()
    assert stats["requests"] == 3 and stats["refs_answered"] == 3
    assert stats["codes"] == {"160": 1, "100": 2} and isinstance(stats["min_gap_s"], float)
    assert http(control + "/asked?ref_id=c1").json() == {"ref_id": "c1", "asked": 2}

    assert http(control + "/config", {"window": "closed"}).json()["window_open_now"] is False
    assert ask(running, ["c1"]).json()["Code"] == 99
    assert http(control + "/config", {"window": "always"}).json()["window_open_now"] is True

    assert http(control + "/reset", {}).json() == {"ok": True}
    assert http(control + "/requests").json() == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/script", {"ref_id": "c1", "outcomes": ["bogus"]}),
        ("/policy", {"policy": "random"}),
        ("/fault", {"kind": "boom"}),
        ("/config", {"max_refs": 0}),
        ("/config", {"window": "25:00-26:00"}),
        ("/config", {"window": "01:00-02:00", "timezone": "Mars/Olympus_Mons"}),
    ],
)
def test_control_api_refuses_bad_input(running: RunningSimulator, path: str, body: object) -> None:
    reply = http(running.base_url + "/_sim" + path, body)

    assert reply.status == 400 and "error" in reply.json()


def test_log_never_holds_the_credentials() -> None:
    api_key, secret_key = "KEY-7f3a9c-unique", "SECRET-b51e02-unique"
    sim = Simulator(api_key=api_key, secret_key=secret_key, rate_interval_s=0)
    with serve_in_thread(sim) as running:
        ask(running, ["r1"], ApiKey=api_key, SecretKey=secret_key)
        ask(running, ["r1"], ApiKey=api_key, SecretKey="SECRET-wrong-unique")
        sim.add_fault("http500")
        ask(running, ["r1"], ApiKey=api_key, SecretKey=secret_key)

        exposed = [
            repr(sim.requests),
            repr(sim.stats()),
            http(running.base_url + "/_sim/requests").text,
            http(running.base_url + "/_sim/stats").text,
            http(running.base_url + "/_sim/config").text,
        ]
        assert [r.code for r in sim.requests] == [100, 101, None]
    for text in exposed:
        assert "KEY-7f3a9c" not in text and "SECRET-" not in text


def test_command_line_serves_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "esms_callbacks.simulator", "--port", "0", "--rate-interval", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"listening on (http://[\d.]+:\d+)/", line)
        assert match, line
        reply = http(
            match.group(1) + GET_CALLBACK_PATH,
            {
                "ApiKey": "sim-api-key",
                "SecretKey": "sim-secret-key",
                "ListRefid": ["z"],
                "OAId": "1",
            },
        )
        assert reply.json()["Code"] == 100
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_command_line_fault_rate() -> None:
    options = ["--fault-rate", "code:1:code=160,message=slow down", "--fault-seed", "5"]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esms_callbacks.simulator",
            "--port",
            "0",
            "--rate-interval",
            "0",
            *options,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        match = re.search(r"listening on (http://[\d.]+:\d+)/", process.stdout.readline())
        assert match
        body = {"ApiKey": "sim-api-key", "SecretKey": "sim-secret-key", "ListRefid": ["z"]}
        reply = http(match.group(1) + GET_CALLBACK_PATH, {**body, "OAId": "1"})
        assert reply.json() == {"Code": 160, "Message": "slow down"}
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("http500:2", "rate must be a number from 0 to 1"),
        ("http500", "KIND:RATE"),
        ("boom:0.1", "unknown fault kind"),
        ("code:0.1", "needs code"),
        ("code:0.1:code", "NAME=VALUE"),
    ],
)
def test_command_line_refuses_a_bad_fault_rate(option: str, reason: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "esms_callbacks.simulator", "--port", "0", "--fault-rate", option],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2 and reason in result.stderr, result.stderr
