"""The simulator's three status sources over real HTTP: GetCallback, QueryZnsStatus and
GetZaloMessageStatus, registered messages moving with an injected clock, and each endpoint's
own rate clock."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from esms_callbacks.simulator import GET_CALLBACK_PATH, RunningSimulator, Simulator, serve_in_thread
from esms_callbacks.simulator.outcomes import type_id_of
from esms_callbacks.simulator.remote import RemoteSimulator
from esms_callbacks.simulator.zns_status import DELIVERY_PATH, QUERY_PATH
from tests.helpers import SIM_API_KEY, SIM_SECRET_KEY, T0

OA_ID = "1090257973118325189"
KEYS = {"ApiKey": SIM_API_KEY, "SecretKey": SIM_SECRET_KEY}
# Never go through a proxy from the environment to reach 127.0.0.1.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class FakeClock:
    """The simulator's clock, moved by the test instead of by sleeping."""

    def __init__(self) -> None:
        self.now_s = T0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


def post(url: str, body: object, *, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url} answered HTTP {exc.code}: {exc.read()!r}") from None


def get(url: str) -> Any:
    with _OPENER.open(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def served(clock: FakeClock) -> Iterator[RunningSimulator]:
    sim = Simulator(api_key=SIM_API_KEY, secret_key=SIM_SECRET_KEY, policy="sent", clock=clock)
    with serve_in_thread(sim) as running:
        yield running


@pytest.fixture
def running(served: RunningSimulator, clock: FakeClock) -> RunningSimulator:
    """The module's simulator, reset: no log, scripts or messages, no rate limits, clock at T0."""
    served.sim.reset()
    served.sim.set_policy("sent")
    served.sim.configure(rate_interval_s=0, query_rate_interval_s=0, delivery_rate_interval_s=0)
    clock.now_s = T0
    return served


def register(running: RunningSimulator, **spec: object) -> None:
    reply = post(running.base_url + "/_sim/messages", {"oa_id": OA_ID, **spec})
    assert reply == {"ok": True, "registered": len(spec["ref_ids"])}  # type: ignore[arg-type]


def callback(running: RunningSimulator, ref_ids: list[str], **keys: str) -> Any:
    body = {**KEYS, **keys, "ListRefid": ref_ids, "OAId": OA_ID}
    return post(running.base_url + GET_CALLBACK_PATH, body)


def query(running: RunningSimulator, sms_id: str, sms_type: object = "25", **keys: str) -> Any:
    body = {**KEYS, **keys, "SmsId": sms_id, "SmsType": sms_type}
    return post(running.base_url + QUERY_PATH, body)


def delivery(running: RunningSimulator, message_id: str, oa_id: str = OA_ID, **keys: str) -> Any:
    body = {**KEYS, **keys, "OAID": oa_id, "MessageId": message_id}
    return post(running.base_url + DELIVERY_PATH, body)


def test_a_message_sent_without_callback_url_is_answered_by_query_only(
    running: RunningSimulator,
) -> None:
    register(running, ref_ids=["no-cb"], callback_url=False)

    from_callback = callback(running, ["no-cb"])
    from_query = query(running, "no-cb")

    assert from_callback["Code"] == 100 and from_callback["Data_callback"] == []
    assert from_query["CodeResult"] == "100"
    data = from_query["Data"]
    assert list(data) == [  # eSMS's sample, in its order
        "ErrorInfo",
        "FinalStatus",
        "SMSID",
        "SendFailed",
        "SendStatus",
        "SendSuccess",
        "TotalPrice",
        "TotalReceiver",
        "TotalSent",
        "ZaloMsgId",
    ]
    assert (data["SMSID"], data["SendStatus"], data["SendSuccess"]) == ("no-cb", 5, 1)
    assert (data["ErrorInfo"], data["FinalStatus"], data["SendFailed"]) == ("0", "1", 0)
    assert isinstance(data["TotalPrice"], float) and len(data["ZaloMsgId"]) == 20


def test_a_message_is_pending_until_its_final_status_is_due(
    running: RunningSimulator, clock: FakeClock
) -> None:
    register(running, ref_ids=["later"], final_after_s=60)

    pending_record = callback(running, ["later"])["Data_callback"][0]
    pending = query(running, "later")["Data"]
    clock.advance(60)
    final_record = callback(running, ["later"])["Data_callback"][0]
    final = query(running, "later")["Data"]

    assert pending_record["SendStatus"] == 7
    assert (pending["SendStatus"], pending["FinalStatus"], pending["ErrorInfo"]) == (5, "0", None)
    assert (pending["SendSuccess"], pending["SendFailed"]) == (0, 0)
    assert (final_record["SendStatus"], final_record["SendSuccess"]) == (5, 1)
    assert (final["SendStatus"], final["FinalStatus"], final["ErrorInfo"]) == (5, "1", "0")
    assert (final["SendSuccess"], final["SendFailed"]) == (1, 0)
    assert final_record["Partnerids"] == final["ZaloMsgId"] == pending["ZaloMsgId"]


def test_a_user_not_online_in_time_fails_with_error_1001(running: RunningSimulator) -> None:
    register(running, ref_ids=["offline"], final="failed_offline")

    data = query(running, "offline")["Data"]

    assert (data["SendStatus"], data["SendSuccess"], data["SendFailed"]) == (5, 0, 1)
    assert (data["ErrorInfo"], data["FinalStatus"]) == ("1001", "1")


def test_failed_and_rejected_messages_carry_zalo_error_codes(running: RunningSimulator) -> None:
    register(running, ref_ids=["failed"], final="failed")
    register(running, ref_ids=["rejected"], final="rejected")

    failed = query(running, "failed")["Data"]
    rejected = query(running, "rejected")["Data"]

    assert (failed["SendStatus"], failed["SendFailed"], failed["FinalStatus"]) == (5, 1, "1")
    assert failed["ErrorInfo"].startswith("-") and failed["ZaloMsgId"]
    assert (rejected["SendStatus"], rejected["SendFailed"], rejected["FinalStatus"]) == (4, 1, "1")
    assert rejected["ErrorInfo"].startswith("-") and rejected["ZaloMsgId"] == ""


def test_a_message_reaches_the_phone_after_a_time(
    running: RunningSimulator, clock: FakeClock
) -> None:
    register(running, ref_ids=["phone"], final_after_s=10, delivered_after_s=5)
    message_id = query(running, "phone")["Data"]["ZaloMsgId"]

    at_zalo = delivery(running, message_id)
    clock.advance(15)
    on_phone = delivery(running, message_id)

    assert at_zalo["CodeResult"] == "100" and at_zalo["ErrorMessage"] == "success. "
    assert at_zalo["Data"]["status"] == 0 and at_zalo["Data"]["delivery_time"] is None
    assert on_phone["Data"] == {
        "delivery_time": str(int((T0 + 15) * 1000)),
        "message": "The message was delivered to the user's phone",
        "status": 1,
    }


def test_a_message_never_delivered_stays_at_zalo(
    running: RunningSimulator, clock: FakeClock
) -> None:
    register(running, ref_ids=["never"])
    message_id = callback(running, ["never"])["Data_callback"][0]["Partnerids"]

    clock.advance(86_400)

    assert delivery(running, message_id)["Data"]["status"] == 0
    assert delivery(running, "0123456789abcdef0123")["Data"]["status"] == -1
    assert delivery(running, message_id, oa_id="another-oa")["Data"]["status"] == -1


def test_query_of_another_type_or_an_unknown_sms_id_finds_no_data(
    running: RunningSimulator,
) -> None:
    register(running, ref_ids=["normal"], type_id=25)
    running.sim.set_policy("missing")

    wrong_type = query(running, "normal", sms_type="24")
    as_number = query(running, "normal", sms_type=25)
    unknown = query(running, "nobody-sent-this")

    assert wrong_type == {"CodeResult": "854", "ErrorMessage": "No data found"}
    assert as_number["CodeResult"] == "100"
    assert unknown["CodeResult"] == "854"


def test_query_advances_a_script_as_get_callback_does(running: RunningSimulator) -> None:
    # a script stands for eSMS's state moving on, whichever endpoint asks
    running.sim.script("scripted", ["pending7", "pending7", "sent"])
    sms_type = type_id_of("scripted")

    first = query(running, "scripted", sms_type)["Data"]
    callback(running, ["scripted"])
    third = query(running, "scripted", sms_type)["Data"]
    wrong_type = query(running, "scripted", 49 - sms_type)  # no data, advances nothing

    assert [d["FinalStatus"] for d in (first, third)] == ["0", "1"]
    assert wrong_type["CodeResult"] == "854"
    assert running.sim.asked("scripted") == 3


def test_each_endpoint_keeps_its_own_rate_clock(running: RunningSimulator) -> None:
    running.sim.configure(rate_interval_s=5, query_rate_interval_s=5, delivery_rate_interval_s=5)
    register(running, ref_ids=["r1"])

    first = query(running, "r1")
    too_soon = query(running, "r1")
    from_callback = callback(running, ["r1"])
    from_delivery = delivery(running, first["Data"]["ZaloMsgId"])

    assert first["CodeResult"] == "100"
    assert too_soon == {"CodeResult": "160", "ErrorMessage": "Exceed TPS"}
    assert from_callback["Code"] == 100 and from_delivery["CodeResult"] == "100"
    figures = get(running.base_url + "/_sim/endpoints")["default"]
    assert figures["query"]["requests"] == 2 and figures["query"]["code_160"] == 1
    assert figures["query"]["rate_interval_s"] == 5.0
    assert figures["delivery"]["requests"] == 1 and figures["delivery"]["code_160"] == 0
    assert get(running.base_url + "/_sim/accounts")["default"]["requests"] == 1


def test_wrong_keys_are_refused_by_every_endpoint(running: RunningSimulator) -> None:
    register(running, ref_ids=["r1"])
    wrong = {"SecretKey": "not-the-secret"}

    assert query(running, "r1", **wrong)["CodeResult"] == "101"
    assert delivery(running, "0123456789abcdef0123", **wrong)["CodeResult"] == "101"
    assert callback(running, ["r1"], **wrong)["Code"] == 101


def test_missing_ids_and_bad_bodies(running: RunningSimulator) -> None:
    no_sms_id = post(running.base_url + QUERY_PATH, {**KEYS, "SmsType": "25"})
    no_message_id = post(running.base_url + DELIVERY_PATH, {**KEYS, "OAID": OA_ID})
    not_json = post(running.base_url + QUERY_PATH, None, raw=b"SmsId=1")
    bad_type = query(running, "r1", sms_type="26")
    without_slash = post(running.base_url + QUERY_PATH.rstrip("/"), {**KEYS, "SmsId": ""})

    assert (no_sms_id["CodeResult"], no_message_id["CodeResult"]) == ("851", "851")
    assert (not_json["CodeResult"], bad_type["CodeResult"]) == ("99", "99")
    assert without_slash["CodeResult"] == "851"


def test_the_log_names_each_request_endpoint_and_what_it_asked(
    running: RunningSimulator,
) -> None:
    register(running, ref_ids=["r1"])
    callback(running, ["r1"])
    message_id = query(running, "r1")["Data"]["ZaloMsgId"]
    delivery(running, message_id)

    log = get(running.base_url + "/_sim/requests")

    assert [entry["endpoint"] for entry in log] == ["callback", "query", "delivery"]
    assert [entry["sms_id"] for entry in log] == [None, "r1", None]
    assert [entry["message_id"] for entry in log] == [None, None, message_id]
    assert [entry["code"] for entry in log] == [100, 100, 100]
    assert log[2]["oa_id"] == OA_ID
    assert SIM_API_KEY not in json.dumps(log) and SIM_SECRET_KEY not in json.dumps(log)
    stats = get(running.base_url + "/_sim/stats")
    assert stats["requests"] == 1
    assert stats["endpoints"]["query"]["requests"] == 1


def test_config_shows_each_endpoint_interval_and_reset_forgets_messages(
    running: RunningSimulator,
) -> None:
    register(running, ref_ids=["r1"], callback_url=False)
    changed = post(
        running.base_url + "/_sim/config",
        {"query_rate_interval_s": 0.02, "delivery_rate_interval_s": 0.05},
    )
    post(running.base_url + "/_sim/reset", {})

    assert (changed["query_rate_interval_s"], changed["delivery_rate_interval_s"]) == (0.02, 0.05)
    assert callback(running, ["r1"])["Data_callback"][0]["SMSID"] == "r1"  # the policy again


def test_a_bad_registration_is_refused_and_changes_nothing(running: RunningSimulator) -> None:
    body = {"ref_ids": ["r1", "r2"], "oa_id": OA_ID, "final": "delivered"}
    request = urllib.request.Request(
        running.base_url + "/_sim/messages", data=json.dumps(body).encode(), method="POST"
    )

    with pytest.raises(urllib.error.HTTPError) as refused:
        _OPENER.open(request, timeout=5)

    assert refused.value.code == 400
    assert "final" in json.loads(refused.value.read())["error"]
    assert running.sim.scripts_of(["r1"]) == [("sent",)]  # still the policy's


def test_remote_simulator_registers_messages(running: RunningSimulator) -> None:
    remote = RemoteSimulator(running.base_url)

    assert remote.register_messages(["r1", "r2"], OA_ID, callback_url=False) == 2
    assert callback(running, ["r1", "r2"])["Data_callback"] == []
    assert remote.endpoint_stats()["default"]["query"]["requests"] == 0


def test_esms_default_intervals() -> None:
    account = Simulator().account()

    assert (account.query_rate_interval_s, account.delivery_rate_interval_s) == (0.01, 0.034)
