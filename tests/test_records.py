"""One eSMS record: lenient ErrorInfo parsing, the status it implies, readable names."""

from __future__ import annotations

import pytest

from esms_callbacks.esms.records import (
    EXPIRED_OUTCOME,
    FAILED,
    NOT_FOUND_OUTCOME,
    PENDING,
    SENT,
    ErrorInfo,
    decode,
    outcome_of,
    parse_error_info,
)

# The two odd ErrorInfo samples of eSMS's docs: a Zalo error object, then leftover text.
ERROR_INFO_SAMPLE = (
    '{"error":-124,"message":"Access token is invalid"}'
    "Object reference not set to an instance of an object."
)
ERROR_INFO_STAMPED = '{"error":-124,"message":"Access token is invalid"}____24/04/2024 16:58:01'

# The record of eSMS's sample answer (docs/esms/getcallback.md), as json.loads gives it.
SAMPLE_RECORD = {
    "SMSID": "4a496110-9fd3-4838-ac8b-bcaa36616f7011",
    "SendFailed": 1,
    "SendSuccess": 0,
    "SendStatus": 5,
    "TotalPrice": 0.0,
    "TotalReceiver": 1,
    "TotalSent": 1,
    "RequestId": None,
    "TypeId": 25,
    "Telcoid": 1,
    "PhoneNumber": "0909090909",
    "CallbackUrl": "https://api.esms.vn/zalo-zns/zns/receive-callback",
    "Partnerids": "7984e9b198c40e9957d6",
    "ErrorInfo": ERROR_INFO_SAMPLE,
    "OAId": "1090257973118325189",
    "ZnsTempId": "228386",
}


# --- parse_error_info ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            ERROR_INFO_SAMPLE,
            ErrorInfo(
                -124,
                "Access token is invalid",
                "Object reference not set to an instance of an object.",
            ),
        ),
        (ERROR_INFO_STAMPED, ErrorInfo(-124, "Access token is invalid", "____24/04/2024 16:58:01")),
        ('{"error":-201,"message":"Invalid parameter"}', ErrorInfo(-201, "Invalid parameter", "")),
        ('  {"error": 0, "message": "ok"}  tail  ', ErrorInfo(0, "ok", "tail")),
        (
            '{"message":"Số điện thoại không hợp lệ"}',
            ErrorInfo(None, "Số điện thoại không hợp lệ", ""),
        ),
        ("{}", ErrorInfo(None, None, "")),
        # wrong types inside the object: kept out of code/message, never guessed
        ('{"error":"-124","message":42}rest', ErrorInfo(None, None, "rest")),
        ('{"error":true,"message":null}', ErrorInfo(None, None, "")),
        ('{"error":-124.5,"message":["a"]}', ErrorInfo(None, None, "")),
        # plain text, and JSON that is not an object at the front: all of it is the detail
        ("Timeout while sending", ErrorInfo(None, None, "Timeout while sending")),
        ("User blocked the OA", ErrorInfo(None, None, "User blocked the OA")),
        ("[1, 2]tail", ErrorInfo(None, None, "[1, 2]tail")),
        # broken JSON at the front: kept whole as the detail
        (
            '{"error":-124,"message":"Access token',
            ErrorInfo(None, None, '{"error":-124,"message":"Access token'),
        ),
        (
            '{"error":-124 "message":"x"}Object reference',
            ErrorInfo(None, None, '{"error":-124 "message":"x"}Object reference'),
        ),
        ("{", ErrorInfo(None, None, "{")),
        # non-string values that JSON can carry
        (-124, ErrorInfo(None, None, "-124")),
        (1.5, ErrorInfo(None, None, "1.5")),
        (True, ErrorInfo(None, None, "true")),
        (["x"], ErrorInfo(None, None, '["x"]')),
        (
            {"error": -124, "message": "Access token is invalid"},
            ErrorInfo(-124, "Access token is invalid", ""),
        ),
    ],
)
def test_parse_error_info_reads_the_object_at_the_front_and_keeps_the_rest(raw, expected):
    assert parse_error_info(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "   ", "\n\t "])
def test_parse_error_info_gives_none_without_error_text(raw):
    assert parse_error_info(raw) is None


@pytest.mark.parametrize("raw", [b"bytes", object(), {1, 2}])
def test_parse_error_info_never_raises_on_other_objects(raw):
    assert isinstance(parse_error_info(raw), ErrorInfo)


def test_parse_error_info_never_raises_on_deeply_nested_text():
    info = parse_error_info('{"error":' + "[" * 100_000)
    assert info is not None and info.code is None


def test_error_info_as_dict():
    info = parse_error_info(ERROR_INFO_STAMPED)
    assert info is not None
    assert info.as_dict() == {
        "code": -124,
        "message": "Access token is invalid",
        "detail": "____24/04/2024 16:58:01",
    }


# --- outcome_of ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "status", "send_status", "error"),
    [
        (SAMPLE_RECORD, FAILED, 5, {"code": -124, "message": "Access token is invalid"}),
        ({"SendStatus": 5, "SendFailed": 0, "SendSuccess": 1}, SENT, 5, None),
        ({"SendStatus": 5}, SENT, 5, None),  # nothing reported failed
        (
            {"SendStatus": 5, "SendFailed": 1},
            FAILED,
            5,
            {"code": None, "message": "delivery failed"},
        ),
        (
            {"SendStatus": 5, "SendFailed": 2, "ErrorInfo": "plain text"},
            FAILED,
            5,
            {"code": None, "message": "delivery failed"},
        ),
        (
            {"SendStatus": 5, "SendFailed": 1, "ErrorInfo": ERROR_INFO_STAMPED},
            FAILED,
            5,
            {"code": -124, "message": "Access token is invalid"},
        ),
        ({"SendStatus": 4}, FAILED, 4, {"code": None, "message": "rejected"}),
        (
            {"SendStatus": 4, "ErrorInfo": '{"error":-108,"message":"Phone number is invalid"}'},
            FAILED,
            4,
            {"code": -108, "message": "Phone number is invalid"},
        ),
        ({"SendStatus": 1}, PENDING, 1, None),
        ({"SendStatus": 2}, PENDING, 2, None),
        ({"SendStatus": 7}, PENDING, 7, None),
        ({"SendStatus": 7, "SendFailed": 1, "ErrorInfo": ERROR_INFO_SAMPLE}, PENDING, 7, None),
        # undocumented SendStatus values stay non-terminal, to be asked again
        ({"SendStatus": 3}, PENDING, 3, None),
        ({"SendStatus": 0}, PENDING, 0, None),
        ({"SendStatus": -1}, PENDING, -1, None),
        ({"SendStatus": 99}, PENDING, 99, None),
        # numbers as strings or whole floats are read; anything else is no SendStatus at all
        (
            {"SendStatus": "5", "SendFailed": "1"},
            FAILED,
            5,
            {"code": None, "message": "delivery failed"},
        ),
        ({"SendStatus": " 4 "}, FAILED, 4, {"code": None, "message": "rejected"}),
        ({"SendStatus": 5.0, "SendFailed": 0.0}, SENT, 5, None),
        ({"SendStatus": 5.5}, PENDING, None, None),
        ({"SendStatus": True}, PENDING, None, None),
        ({"SendStatus": None}, PENDING, None, None),
        ({"SendStatus": "done"}, PENDING, None, None),
        ({"SendStatus": [5]}, PENDING, None, None),
        ({"SendStatus": {"v": 5}}, PENDING, None, None),
        ({}, PENDING, None, None),
        ({"SMSID": "r1", "Unexpected": {"nested": [1, 2]}}, PENDING, None, None),
    ],
)
def test_outcome_of_maps_send_status(record, status, send_status, error):
    # given a record; when its outcome is read
    outcome = outcome_of(record)
    # expect the status, the SendStatus read, the error and the record as received
    assert (outcome.status, outcome.send_status, outcome.error) == (status, send_status, error)
    assert outcome.record is record
    assert outcome.terminal is (status in (SENT, FAILED))


@pytest.mark.parametrize("value", ["--5", "²", "①"])
def test_outcome_of_never_raises_on_odd_numeric_strings(value):
    assert outcome_of({"SendStatus": value, "SendFailed": value}).status == PENDING


@pytest.mark.parametrize(
    ("outcome", "terminal", "state_key"),
    [
        (outcome_of({"SendStatus": 5}), True, "sent:5"),
        (outcome_of({"SendStatus": 4}), True, "failed:4"),
        (outcome_of({"SendStatus": 7}), False, "pending:7"),
        (outcome_of({}), False, "pending:"),
        (NOT_FOUND_OUTCOME, False, "not_found:"),
        (EXPIRED_OUTCOME, True, "expired:"),
    ],
)
def test_terminal_and_state_key(outcome, terminal, state_key):
    assert outcome.terminal is terminal
    assert outcome.state_key == state_key


def test_expired_outcome_says_why():
    assert EXPIRED_OUTCOME.error == {"code": None, "message": "gave up after max age"}
    assert (NOT_FOUND_OUTCOME.error, NOT_FOUND_OUTCOME.record) == (None, None)


# --- decode ----------------------------------------------------------------------------------


def test_decode_the_sample_record():
    assert decode(SAMPLE_RECORD) == {
        "type": "Zalo normal",
        "telco": "Viettel",
        "send_status": "done",
        "error_info": {
            "code": -124,
            "message": "Access token is invalid",
            "detail": "Object reference not set to an instance of an object.",
        },
    }


@pytest.mark.parametrize(
    ("field", "value", "key", "name"),
    [
        ("TypeId", 24, "type", "Zalo priority"),
        ("TypeId", 25, "type", "Zalo normal"),
        ("TypeId", "24", "type", "Zalo priority"),
        ("TypeId", 2, "type", None),
        ("Telcoid", 1, "telco", "Viettel"),
        ("Telcoid", 2, "telco", "Mobifone"),
        ("Telcoid", 3, "telco", "Vinaphone"),
        ("Telcoid", 4, "telco", "Vietnamobile"),
        ("Telcoid", 5, "telco", "Gmobile"),
        ("Telcoid", 6, "telco", "Itel"),
        ("Telcoid", 7, "telco", "Reddi"),
        ("Telcoid", 8, "telco", None),
        ("Telcoid", "Viettel", "telco", None),
        ("SendStatus", 1, "send_status", "awaiting approval"),
        ("SendStatus", 2, "send_status", "waiting to send"),
        ("SendStatus", 4, "send_status", "rejected"),
        ("SendStatus", 5, "send_status", "done"),
        ("SendStatus", 7, "send_status", "sent, awaiting the delivery report"),
        ("SendStatus", 3, "send_status", None),
        ("SendStatus", None, "send_status", None),
        ("ErrorInfo", "plain", "error_info", {"code": None, "message": None, "detail": "plain"}),
        ("ErrorInfo", "", "error_info", None),
    ],
)
def test_decode_names_each_field(field, value, key, name):
    assert decode({field: value})[key] == name


def test_decode_an_empty_record():
    assert decode({}) == {"type": None, "telco": None, "send_status": None, "error_info": None}
