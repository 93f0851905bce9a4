"""GetCallback answers: every documented Code to its error, malformed bodies, odd records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esms_callbacks.errors import (
    AccountError,
    AuthError,
    BalanceError,
    ConfigError,
    EsmsError,
    InvalidSubmission,
    MalformedResponse,
    NotReady,
    RateLimited,
    RequestRejected,
    TransientError,
    UnexpectedCode,
)
from esms_callbacks.esms.client import CallbackAnswer, EsmsClient, parse_answer
from esms_callbacks.esms.codes import error_for_code
from esms_callbacks.esms.records import FAILED, PENDING, outcome_of

SEED = Path(__file__).resolve().parent.parent / "docs" / "esms" / "getcallback.md"

# eSMS's sample answer, byte for byte as its page shows it (trailing spaces included).
SAMPLE_ANSWER = (
    "\n{\n"
    '    "Code": 100,\n'
    '    "Message": "Success",\n'
    '    "Data_callback": [\n'
    "        {\n"
    '            "SMSID": "4a496110-9fd3-4838-ac8b-bcaa36616f7011",\n'
    '            "SendFailed": 1,\n'
    '            "SendSuccess": 0,\n'
    '            "SendStatus": 5,\n'
    '            "TotalPrice": 0.0,\n'
    '            "TotalReceiver": 1,\n'
    '            "TotalSent": 1,\n'
    '            "RequestId": null,\n'
    '            "TypeId": 25,\n'
    '            "Telcoid": 1,\n'
    '            "PhoneNumber": "0909090909",\n'
    '            "CallbackUrl": "https://api.esms.vn/zalo-zns/zns/receive-callback",\n'
    '            "Partnerids": "7984e9b198c40e9957d6",\n'
    '            "ErrorInfo": "{\\"error\\":-124,\\"message\\":\\"Access token is invalid\\"}'
    'Object reference not set to an instance of an object.",\n'
    '            "OAId": "1090257973118325189",\n'
    '            "ZnsTempId": "228386"\n'
    "        } \n"
    "                    ]\n"
    "  } \n"
)
SAMPLE_SMSID = "4a496110-9fd3-4838-ac8b-bcaa36616f7011"
# The RefIds of the same page's sample request: not the SMSID its sample answer carries.
SAMPLE_REQUEST_REF_IDS = {
    "41a35814-81d7-4ad1-9cce-1ac7fddd5f34196",
    "41a35814-81d7-4ad1-9cce-1ac7fddd5f34197",
    "41a35814-81d7-4ad1-9cce-1ac7fddd5f34198",
}

DOCUMENTED_ERRORS = {
    101: AuthError,
    140: AuthError,
    143: AuthError,
    103: BalanceError,
    105: NotReady,
    160: RateLimited,
    99: RequestRejected,
    110: RequestRejected,
    204: RequestRejected,
    799: RequestRejected,
    851: RequestRejected,
    854: RequestRejected,
}
UNDOCUMENTED_CODES = [-1, 0, 1, 102, 124, 200, 999]

FAKE_API_KEY = "FAKE-ApiKey-7f3c9e1d-NEVER-PRINT"
FAKE_SECRET_KEY = "FAKE-Secret-b2a84c55-NEVER-PRINT"


def answer(data: object, **extra: object) -> str:
    return json.dumps({"Code": 100, "Message": "Success", "Data_callback": data, **extra})


# --- eSMS's own sample ------------------------------------------------------------------------


def test_the_sample_here_is_the_one_on_the_esms_page():
    assert SEED.read_text(encoding="utf-8").split("```")[3] == SAMPLE_ANSWER


def test_the_sample_answer_parses_into_its_one_record():
    # given eSMS's sample answer, asked for its SMSID; when parsed
    parsed = parse_answer(SAMPLE_ANSWER, {SAMPLE_SMSID})
    # expect the record as sent, nothing skipped
    assert list(parsed.records) == [SAMPLE_SMSID]
    assert parsed.skipped == []
    record = parsed.records[SAMPLE_SMSID]
    assert record["ErrorInfo"] == (
        '{"error":-124,"message":"Access token is invalid"}'
        "Object reference not set to an instance of an object."
    )
    assert (record["SendStatus"], record["SendFailed"], record["RequestId"]) == (5, 1, None)
    assert (record["TypeId"], record["Telcoid"], record["TotalPrice"]) == (25, 1, 0.0)
    assert (record["OAId"], record["ZnsTempId"]) == ("1090257973118325189", "228386")
    assert len(record) == 16
    # and its outcome is a failure carrying Zalo's -124
    outcome = outcome_of(record)
    assert (outcome.status, outcome.send_status) == (FAILED, 5)
    assert outcome.error == {"code": -124, "message": "Access token is invalid"}


def test_the_sample_answer_to_the_sample_request_is_skipped_as_not_asked():
    # given the sample answer, but asked for the sample request's RefIds (which differ)
    parsed = parse_answer(SAMPLE_ANSWER, SAMPLE_REQUEST_REF_IDS)
    # expect no record, and one reason naming the stray SMSID
    assert parsed.records == {}
    assert len(parsed.skipped) == 1
    assert "not asked" in parsed.skipped[0] and SAMPLE_SMSID in parsed.skipped[0]


# --- Code ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "kind"), sorted(DOCUMENTED_ERRORS.items()))
def test_each_documented_code_raises_its_error(code, kind):
    # given an answer with a documented non-success Code
    body = json.dumps({"Code": code, "Message": f"eSMS says {code}"})
    # when parsed
    with pytest.raises(EsmsError) as caught:
        parse_answer(body, {"r1"})
    # expect exactly its error class, keeping eSMS's code and message
    assert type(caught.value) is kind
    assert (caught.value.code, caught.value.esms_message) == (code, f"eSMS says {code}")
    assert str(code) in str(caught.value)


@pytest.mark.parametrize("code", UNDOCUMENTED_CODES)
def test_an_undocumented_code_is_unexpected_and_transient(code):
    with pytest.raises(UnexpectedCode) as caught:
        parse_answer(json.dumps({"Code": code, "Message": "Something new"}), {"r1"})
    assert isinstance(caught.value, TransientError)
    assert (caught.value.code, caught.value.esms_message) == (code, "Something new")


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("100", None),
        (" 100 ", None),
        ("160", RateLimited),
        ("101", AuthError),
        ("777", UnexpectedCode),
    ],
)
def test_a_string_code_is_tolerated(code, kind):
    body = json.dumps({"Code": code, "Message": "m", "Data_callback": []})
    if kind is None:
        assert parse_answer(body, {"r1"}) == CallbackAnswer({}, [])
    else:
        with pytest.raises(kind) as caught:
            parse_answer(body, {"r1"})
        assert caught.value.code == int(code)


@pytest.mark.parametrize(
    "body",
    [
        '{"Code": 160}',
        '{"Code": 160, "Message": null}',
        '{"Code": 160, "Message": 42}',
        '{"Code": 160, "Message": ["x"]}',
        '{"Code": 160, "Message": {"a": 1}}',
    ],
)
def test_a_missing_or_odd_message_becomes_empty(body):
    with pytest.raises(RateLimited) as caught:
        parse_answer(body, {"r1"})
    assert (caught.value.code, caught.value.esms_message) == (160, "")


# --- malformed answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("", "is not JSON"),
        ("<html><body>502 Bad Gateway</body></html>", "is not JSON"),
        ('{"Code": 100, "Message": "Success"', "is not JSON"),
        ("Success", "is not JSON"),
        ("null", "is not a JSON object"),
        ("[]", "is not a JSON object"),
        ("100", "is not a JSON object"),
        ('"Success"', "is not a JSON object"),
        ('[{"Code": 100}]', "is not a JSON object"),
        ('{"Message": "Success", "Data_callback": []}', "no numeric Code"),
        ('{"Code": null}', "no numeric Code"),
        ('{"Code": true}', "no numeric Code"),
        ('{"Code": "abc"}', "no numeric Code"),
        ('{"Code": ""}', "no numeric Code"),
        ('{"Code": [100]}', "no numeric Code"),
        ('{"Code": {"value": 100}}', "no numeric Code"),
        ('{"code": 100, "data_callback": []}', "no numeric Code"),
        ('{"Code": 100, "Data_callback": {}}', "Data_callback is not a list"),
        ('{"Code": 100, "Data_callback": "[]"}', "Data_callback is not a list"),
        ('{"Code": 100, "Data_callback": 5}', "Data_callback is not a list"),
        ('{"Code": 100, "Data_callback": true}', "Data_callback is not a list"),
        ('{"Code": 100, "Data_callback": {"SMSID": "r1"}}', "Data_callback is not a list"),
    ],
)
def test_a_malformed_answer_raises_malformed_response(body, problem):
    with pytest.raises(MalformedResponse) as caught:
        parse_answer(body, {"r1"})
    assert problem in str(caught.value)
    assert isinstance(caught.value, TransientError)


def test_a_long_malformed_body_is_quoted_short():
    with pytest.raises(MalformedResponse) as caught:
        parse_answer("<html>" + "x" * 10_000, {"r1"})
    assert len(str(caught.value)) < 300
    assert str(caught.value).endswith("...'")


@pytest.mark.parametrize("body", ["[" * 100_000, '{"Code": 100, "Data_callback": ' + "[" * 100_000])
def test_a_deeply_nested_body_is_malformed_not_a_crash(body):
    with pytest.raises(MalformedResponse):
        parse_answer(body, {"r1"})


@pytest.mark.parametrize("code", ["\u00b2", "\u2460"])
def test_a_code_of_digit_like_characters_is_malformed_not_a_crash(code):
    with pytest.raises(MalformedResponse):
        parse_answer(json.dumps({"Code": code}), {"r1"})


# --- records ---------------------------------------------------------------------------------


@pytest.mark.parametrize("data", ["absent", None, []])
def test_success_without_records_is_an_empty_answer(data):
    body = json.dumps({"Code": 100, "Message": "Success"}) if data == "absent" else answer(data)
    assert parse_answer(body, {"r1", "r2"}) == CallbackAnswer({}, [])


def test_records_of_refids_not_asked_are_skipped_with_a_reason():
    # given records for r1 (asked) and r9 (not asked)
    body = answer([{"SMSID": "r1", "SendStatus": 5}, {"SMSID": "r9", "SendStatus": 5}])
    # when parsed for r1 and r2
    parsed = parse_answer(body, {"r1", "r2"})
    # expect r1 kept, r2 simply absent, r9 skipped by name
    assert list(parsed.records) == ["r1"]
    assert parsed.skipped == ["record for a RefId not asked: 'r9'"]


@pytest.mark.parametrize(
    "item",
    [
        {},
        {"SMSID": None},
        {"SMSID": 123},
        {"SMSID": ["r1"]},
        {"smsid": "r1"},
        "r1",
        5,
        None,
        [],
        True,
    ],
)
def test_records_without_a_string_smsid_are_skipped_with_a_reason(item):
    # given one good record and one without a usable SMSID
    parsed = parse_answer(answer([{"SMSID": "r1"}, item]), {"r1"})
    # expect the good one kept and the other skipped, described by its shape
    assert list(parsed.records) == ["r1"]
    assert len(parsed.skipped) == 1
    assert parsed.skipped[0].startswith("record without a string SMSID: ")


def test_a_skipped_record_is_logged_by_its_field_names_never_its_values():
    # given a record without a string SMSID that carries a phone number and a push URL
    record = {
        "SMSID": 12345,
        "PhoneNumber": "0901888484",
        "CallbackUrl": "https://shop.example/esms/push/Secret-Push-Token-123456",
    }
    # when parsed
    parsed = parse_answer(answer([record]), {"r1"})
    # expect field names, no value
    (line,) = parsed.skipped
    assert "PhoneNumber" in line and "CallbackUrl" in line
    for value in ("0901888484", "Secret-Push-Token-123456", "12345"):
        assert value not in line


def test_a_cut_off_answer_is_reported_without_its_phone_numbers_or_urls():
    # given an answer cut off mid-record, as a broken proxy would send it
    body = (
        '{"Code":100,"Data_callback":[{"SMSID":"r1","PhoneNumber":"84901888484",'
        '"CallbackUrl":"https://shop.example/esms/push/Secret-Push-Token-123456","Send'
    )
    # when parsed
    with pytest.raises(MalformedResponse) as caught:
        parse_answer(body, {"r1"})
    # expect the error to say what it is, with neither the number nor the token
    message = str(caught.value)
    assert "not JSON" in message
    assert "84901888484" not in message and "Secret-Push-Token" not in message


def test_a_duplicate_record_is_skipped_with_a_reason():
    # given two records for r1
    first, second = {"SMSID": "r1", "SendStatus": 7}, {"SMSID": "r1", "SendStatus": 5}
    # when parsed
    parsed = parse_answer(answer([first, second, {"SMSID": "r2"}]), {"r1", "r2"})
    # expect one record for r1 (the last, as the reason says) and the duplicate reported
    assert set(parsed.records) == {"r1", "r2"}
    assert parsed.records["r1"] == second
    assert parsed.skipped == ["duplicate record for 'r1'; the last one wins"]


def test_a_record_with_only_its_smsid_is_kept_and_pending():
    parsed = parse_answer(answer([{"SMSID": "r1"}]), {"r1"})
    assert parsed.records == {"r1": {"SMSID": "r1"}}
    assert outcome_of(parsed.records["r1"]).status == PENDING


def test_wrong_types_and_extra_fields_never_crash():
    # given a record whose every field has the wrong type, plus fields eSMS never documented
    odd = {
        "SMSID": "r1",
        "SendStatus": "five",
        "SendFailed": [1],
        "SendSuccess": {"n": 1},
        "ErrorInfo": {"error": "x"},
        "TypeId": None,
        "Telcoid": 1.5,
        "TotalPrice": "free",
        "NewField": {"deep": [1, {"x": None}]},
    }
    body = answer([odd], Extra="ignored", Data_extra=[1])
    # when parsed and read
    parsed = parse_answer(body, {"r1"})
    outcome = outcome_of(parsed.records["r1"])
    # expect the record as given, pending (nothing readable), nothing skipped
    assert parsed.records["r1"] == odd
    assert parsed.skipped == []
    assert (outcome.status, outcome.send_status, outcome.error) == (PENDING, None, None)


def test_a_full_batch_of_records_is_kept():
    ref_ids = [f"ref-{i:03d}" for i in range(200)]
    parsed = parse_answer(answer([{"SMSID": r, "SendStatus": 5} for r in ref_ids]), set(ref_ids))
    assert list(parsed.records) == ref_ids
    assert parsed.skipped == []


# --- errors.py -------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "kind"), sorted(DOCUMENTED_ERRORS.items()))
def test_error_for_code_keeps_code_and_message(code, kind):
    error = error_for_code(code, "Sai ApiKey hoặc SecretKey")
    assert type(error) is kind
    assert (error.code, error.esms_message) == (code, "Sai ApiKey hoặc SecretKey")
    assert f"Code {code}" in str(error)
    assert "'Sai ApiKey hoặc SecretKey'" in str(error)


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (101, "wrong ApiKey or SecretKey"),
        (103, "not enough balance"),
        (105, "SMSID not found yet"),
        (140, "IP address not whitelisted"),
        (143, "account locked"),
        (160, "request rate exceeded"),
        (99, "refused"),
        (854, "refused"),
    ],
)
def test_error_for_code_says_what_the_code_means(code, meaning):
    assert f"({meaning})" in str(error_for_code(code, ""))


@pytest.mark.parametrize("code", UNDOCUMENTED_CODES)
def test_error_for_an_undocumented_code_invents_no_meaning(code):
    # given a code eSMS does not document (124 is a send-API code, -124 a Zalo one)
    error = error_for_code(code, "As given")
    # expect UnexpectedCode, retried, with the code and message kept as given
    assert type(error) is UnexpectedCode
    assert isinstance(error, TransientError) and isinstance(error, EsmsError)
    assert (error.code, error.esms_message) == (code, "As given")
    assert str(error) == f"eSMS answered Code {code} (undocumented code): 'As given'"


@pytest.mark.parametrize(
    ("kind", "transient", "account"),
    [
        (NotReady, True, False),
        (RateLimited, True, False),
        (UnexpectedCode, True, False),
        (MalformedResponse, True, False),
        (AuthError, False, True),
        (BalanceError, False, True),
        (RequestRejected, False, False),
    ],
)
def test_the_error_tree_decides_retry(kind, transient, account):
    assert issubclass(kind, EsmsError)
    assert issubclass(kind, TransientError) is transient
    assert issubclass(kind, AccountError) is account


def test_bad_input_errors_are_value_errors_not_esms_errors():
    for kind in (InvalidSubmission, ConfigError):
        assert issubclass(kind, ValueError)
        assert not issubclass(kind, EsmsError)


def test_the_client_never_shows_its_credentials():
    client = EsmsClient("http://status-sms.esms.vn/", FAKE_API_KEY, FAKE_SECRET_KEY, 5.0)
    for text in (repr(client), str(client)):
        assert text == "EsmsClient('http://status-sms.esms.vn/ZaloCallback/GetCallback')"
        assert FAKE_API_KEY not in text and FAKE_SECRET_KEY not in text


def test_control_characters_from_esms_are_escaped_in_messages():
    # given an answer that tries to forge a log line and colour the terminal
    body = '{"Code": 100, "Data_callback": [{"SMSID": "r9\\n[ERROR] forged\\u001b[31m"}]}'
    with pytest.raises(MalformedResponse) as caught:
        parse_answer("oops\x1b[31m\x00 <html>\r\nERROR forged", {"r1"})
    # expect every message on one line, free of control characters, escapes shown as such
    parsed = parse_answer(body, {"r1"})
    for message in [str(caught.value), *parsed.skipped]:
        assert message.isprintable(), message
        assert "\\x1b[31m" in message
