"""QueryZnsStatus and GetZaloMessageStatus answers parsed leniently, and what they imply: the
outcome of a QueryZnsStatus Data, the moment GetZaloMessageStatus says a ZNS reached the phone."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from esms_callbacks.errors import MalformedResponse, RateLimited, RequestRejected
from esms_callbacks.esms.delivery import DeliveryStatus, delivery_moment, parse_delivery_answer
from esms_callbacks.esms.query import (
    ZnsStatus,
    outcome_of_query,
    parse_query_answer,
    query_error_info,
)
from esms_callbacks.esms.records import FAILED, PENDING, SENT, ErrorInfo
from tests.esms_samples import DELIVERY_SAMPLE, QUERY_SAMPLE, QUERY_SAMPLE_SMSID


def query_answer(data: object, code: object = "100") -> str:
    return json.dumps({"CodeResult": code, "Data": data})


def zns(**fields: Any) -> ZnsStatus:
    """A ZnsStatus as QueryZnsStatus would give it for these Data fields."""
    data = {"SMSID": "s1", **fields}
    status = parse_query_answer(query_answer(data), "s1")
    assert status is not None
    return status


# --- parse_query_answer -----------------------------------------------------------------------


def test_the_sample_for_another_sms_id_is_malformed():
    # eSMS's page asks for 2d00b834... and answers for 59e0c764...: a Data for another SMSID
    with pytest.raises(MalformedResponse, match="another SMSID"):
        parse_query_answer(QUERY_SAMPLE, "2d00b834cc1d488081ba7ec308da0ec40918238965")


def test_the_sample_for_its_own_sms_id_parses():
    status = parse_query_answer(QUERY_SAMPLE, QUERY_SAMPLE_SMSID)
    assert status is not None
    assert (status.send_status, status.final, status.error_info) == (5, True, "0")


def test_fields_missing_or_of_other_types_become_none():
    # given a Data whose every field is missing or mistyped
    body = query_answer(
        {
            "SMSID": "s1",
            "SendStatus": "five",
            "SendSuccess": None,
            "SendFailed": [1],
            "FinalStatus": "yes",
            "ErrorInfo": 1.5,
            "ZaloMsgId": 42,
        }
    )
    status = parse_query_answer(body, "s1")
    assert status == ZnsStatus(
        sms_id="s1",
        send_status=None,
        send_success=None,
        send_failed=None,
        final=False,
        error_info=None,
        zalo_msg_id=None,
        record=json.loads(body)["Data"],
    )


def test_numbers_sent_as_strings_and_strings_as_numbers_are_read():
    status = zns(SendStatus="5", SendSuccess="0", SendFailed="1", FinalStatus=1, ErrorInfo=1001)
    assert (status.send_status, status.send_success, status.send_failed) == (5, 0, 1)
    assert status.final is True
    assert status.error_info == "1001"  # as text


@pytest.mark.parametrize(("final_status", "final"), [("1", True), (1, True), (True, True)])
def test_final_status_one_or_true_is_final(final_status, final):
    assert zns(FinalStatus=final_status).final is final


@pytest.mark.parametrize("final_status", ["0", 0, False, None, "", "2", "true"])
def test_any_other_final_status_is_not_final(final_status):
    assert zns(FinalStatus=final_status).final is False


def test_an_error_info_object_is_kept_as_its_json_text():
    status = zns(ErrorInfo={"error": -124, "message": "Access token is invalid"})
    assert status.error_info is not None
    assert json.loads(status.error_info) == {"error": -124, "message": "Access token is invalid"}


def test_a_data_without_smsid_is_taken_as_the_one_asked():
    status = parse_query_answer(query_answer({"SendStatus": 2}), "s1")
    assert status is not None and status.sms_id == "s1" and status.send_status == 2


def test_a_success_without_data_is_no_data():
    assert parse_query_answer(query_answer(None), "s1") is None


@pytest.mark.parametrize("data", [[], "text", 5])
def test_a_data_that_is_not_an_object_is_malformed(data):
    with pytest.raises(MalformedResponse):
        parse_query_answer(query_answer(data), "s1")


@pytest.mark.parametrize("body", ['{"Data": {}}', '{"CodeResult": "ok"}', '{"CodeResult": true}'])
def test_an_answer_without_a_numeric_code_result_is_malformed(body):
    with pytest.raises(MalformedResponse, match="CodeResult"):
        parse_query_answer(body, "s1")


def test_a_code_is_raised_with_esms_error_message():
    body = json.dumps({"CodeResult": "851", "ErrorMessage": "Thiếu MessageId hoặc SMSID"})
    with pytest.raises(RequestRejected) as caught:
        parse_query_answer(body, "s1")
    assert caught.value.esms_message == "Thiếu MessageId hoặc SMSID"


# --- outcome_of_query -------------------------------------------------------------------------


def test_final_done_without_failures_is_sent():
    outcome = outcome_of_query(zns(SendStatus=5, FinalStatus="1", SendFailed=0, ErrorInfo="0"))
    assert (outcome.status, outcome.send_status, outcome.error) == (SENT, 5, None)
    assert outcome.error_info is None
    assert outcome.record == {
        "SMSID": "s1",
        "SendStatus": 5,
        "FinalStatus": "1",
        "SendFailed": 0,
        "ErrorInfo": "0",
    }
    assert outcome.state_key == "sent:5" and outcome.terminal


def test_final_done_with_a_failure_and_1001_is_failed_not_online():
    outcome = outcome_of_query(zns(SendStatus=5, FinalStatus="1", SendFailed=1, ErrorInfo="1001"))
    assert (outcome.status, outcome.send_status) == (FAILED, 5)
    assert outcome.error == {"code": 1001, "message": "the user was not online in time"}
    assert outcome.error_info == ErrorInfo(1001, "the user was not online in time", "")


def test_final_done_with_a_zalo_error_object_carries_its_code_and_message():
    error_info = '{"error":-124,"message":"Access token is invalid"}Object reference not set.'
    outcome = outcome_of_query(
        zns(SendStatus=5, FinalStatus="1", SendFailed=1, ErrorInfo=error_info)
    )
    assert outcome.status == FAILED
    assert outcome.error == {"code": -124, "message": "Access token is invalid"}
    assert outcome.error_info is not None
    assert outcome.error_info.detail == "Object reference not set."


@pytest.mark.parametrize("error_info", ["-124", " -124 ", -124])
def test_final_done_with_a_bare_zalo_code_carries_the_code(error_info):
    outcome = outcome_of_query(
        zns(SendStatus=5, FinalStatus="1", SendFailed=1, ErrorInfo=error_info)
    )
    assert outcome.status == FAILED
    assert outcome.error == {"code": -124, "message": "delivery failed"}


@pytest.mark.parametrize("error_info", ["Timeout at Zalo", None, ""])
def test_final_done_with_text_or_no_error_info_fails_without_a_code(error_info):
    outcome = outcome_of_query(
        zns(SendStatus=5, FinalStatus="1", SendFailed="2", ErrorInfo=error_info)
    )
    assert outcome.status == FAILED
    assert outcome.error == {"code": None, "message": "delivery failed"}


@pytest.mark.parametrize("final_status", ["1", "0"])
def test_rejected_is_failed_final_or_not(final_status):
    outcome = outcome_of_query(zns(SendStatus=4, FinalStatus=final_status))
    assert (outcome.status, outcome.send_status) == (FAILED, 4)
    assert outcome.error == {"code": None, "message": "rejected"}


def test_done_but_not_final_is_still_pending():
    outcome = outcome_of_query(zns(SendStatus=5, FinalStatus="0", SendFailed=1, ErrorInfo=None))
    assert (outcome.status, outcome.send_status, outcome.error) == (PENDING, 5, None)
    assert outcome.state_key == "pending:5" and not outcome.terminal


@pytest.mark.parametrize(
    ("send_status", "final_status"), [(1, "0"), (2, "0"), (2, "1"), (None, "1"), (9, "1")]
)
def test_anything_else_is_pending_with_its_send_status(send_status, final_status):
    outcome = outcome_of_query(zns(SendStatus=send_status, FinalStatus=final_status))
    assert (outcome.status, outcome.send_status, outcome.error) == (PENDING, send_status, None)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (None, None),
        ("", None),
        ("0", None),
        ("1001", ErrorInfo(1001, "the user was not online in time", "")),
        ("-124", ErrorInfo(-124, None, "")),
        ('{"error":-118,"message":"User is not exist"}', ErrorInfo(-118, "User is not exist", "")),
        ("some text", ErrorInfo(None, None, "some text")),
    ],
)
def test_query_error_info(raw, parsed):
    assert query_error_info(raw) == parsed


# --- parse_delivery_answer and delivery_moment ------------------------------------------------


def delivery_answer(data: object, code: object = "100") -> str:
    return json.dumps({"CodeResult": code, "Data": data, "ErrorMessage": "success. "})


def test_the_sample_is_delivered_at_its_moment():
    status = parse_delivery_answer(DELIVERY_SAMPLE)
    assert delivery_moment(status) == datetime(2026, 1, 6, 5, 40, 30, 984000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("delivery_time", "ms"),
    [
        ("1767678030984", 1767678030984),
        (1767678030984, 1767678030984),
        (" 1767678030984 ", 1767678030984),
        ("0", None),
        (0, None),
        ("", None),
        ("-5", None),
        ("soon", None),
        ("1767678030984.5", None),
        (None, None),
        ([1], None),
    ],
)
def test_delivery_time_is_ms_since_the_epoch_or_none(delivery_time, ms):
    status = parse_delivery_answer(delivery_answer({"status": 1, "delivery_time": delivery_time}))
    assert status.delivered_at_ms == ms


@pytest.mark.parametrize(("raw", "status"), [(1, 1), ("1", 1), (0, 0), (-1, -1), ("x", None)])
def test_status_is_read_as_a_number(raw, status):
    assert parse_delivery_answer(delivery_answer({"status": raw})).status == status


def test_fields_missing_become_none():
    assert parse_delivery_answer(delivery_answer({})) == DeliveryStatus(None, None, None, {})


def test_a_message_that_is_not_text_is_none():
    assert parse_delivery_answer(delivery_answer({"status": 0, "message": 7})).message is None


@pytest.mark.parametrize("data", [None, [], "text"])
def test_a_data_that_is_not_an_object_is_malformed_for_delivery(data):
    with pytest.raises(MalformedResponse):
        parse_delivery_answer(delivery_answer(data))


def test_exceed_tps_is_rate_limited():
    with pytest.raises(RateLimited):
        parse_delivery_answer(json.dumps({"CodeResult": "160", "ErrorMessage": "Exceed TPS"}))


@pytest.mark.parametrize(
    "status",
    [
        DeliveryStatus(0, 1767678030984, None, {}),  # at Zalo, not on the phone yet
        DeliveryStatus(-1, 1767678030984, None, {}),  # no such message
        DeliveryStatus(None, 1767678030984, None, {}),
        DeliveryStatus(1, None, None, {}),  # delivered, when unknown
        DeliveryStatus(1, 10**18, None, {}),  # past year 9999
    ],
)
def test_no_moment_unless_delivered_at_a_known_time(status):
    assert delivery_moment(status) is None


def test_query_zns_status_code_105_is_no_data_yet_not_a_failure():
    import json

    from esms_callbacks.esms.query import parse_query_answer

    body = json.dumps({"CodeResult": "105", "ErrorMessage": "SMSID not found"})
    assert parse_query_answer(body, "young") is None
