"""GetSmsSentData_V2 (eSMS's ledger) over real HTTP: the body eSMS's page shows, dates in Vietnam
time, pages, SentTime read leniently, codes to errors, the rate gate, and personal data (phone
numbers, message text) kept out of everything the client returns or raises.

eSMS's page: devesms/gitbook_esms_for_develop_v2, esms-api/ham-truy-xuat-va-dang-ky/
ham-kiem-tra-trang-thai-tin-nhan-theo-khoang-thoi-gian.md; codes in esms-api/bang-ma-loi.md.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from esms_callbacks.errors import (
    AuthError,
    MalformedResponse,
    NotSent,
    RateLimited,
    ServerError,
    UnexpectedCode,
)
from esms_callbacks.esms.ledger import (
    LEDGER_FAILED_MESSAGE,
    LedgerPage,
    LedgerRow,
    outcome_of_ledger,
    parse_ledger_page,
    sent_moment,
)
from esms_callbacks.esms.records import FAILED, SENT
from tests.esms_samples import LEDGER_SAMPLE, LEDGER_SAMPLE_PHONE, LEDGER_SAMPLE_TEXT
from tests.test_client_sources import API_KEY, SECRET_KEY, FakeEsms, ask

LEDGER_PATH = "/MainService.svc/json/GetSmsSentData_V2"
FROM_LOCAL = datetime(2025, 1, 1, 6, 0, 0)  # naive: Vietnam time as given
TO_LOCAL = datetime(2025, 1, 2, 18, 0, 0)
SAMPLE_SENT_AT = datetime(2024, 1, 17, 9, 34, 8, 995000, tzinfo=UTC)


def sent_data(
    sms_type: int = 25,
    from_local: datetime = FROM_LOCAL,
    to_local: datetime = TO_LOCAL,
    page: int = 1,
    page_size: int = 500,
    **gates: Any,
) -> Any:
    return lambda client: client.sent_data(sms_type, from_local, to_local, page, page_size, **gates)


def row(**fields: Any) -> dict[str, Any]:
    """A ledger row as eSMS gives it, personal data included."""
    return {
        "Campaign": "Chiến dịch",
        "Content": "Ma OTP cua ban la 482913",
        "Phone": "0912345678",
        "ReferenceId": "ref-1",
        "SellPrice": 300.0,
        "SendResult": 1,
        "SendStatus": 5,
        "SentTime": "/Date(1705484048995+0700)/",
        "SmsId": 123,
        "SmsType": 25,
        **fields,
    }


def page_of(*rows: object, count_total: int | None = None) -> dict[str, Any]:
    total = len(rows) if count_total is None else count_total
    return {"CodeResult": "100", "CountTotal": total, "SentData": list(rows)}


# --- the documented shapes --------------------------------------------------------------------


def test_sends_the_documented_body_and_reads_the_sample_answer():
    # given eSMS answering with its page's sample (typos mended)
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, LEDGER_SAMPLE)
    # when asked for the sample's range, type 2, first page of 500
    page = ask(fake, sent_data(sms_type=2))
    # expect the documented request: SmsType a string, dates as text, Page and PageSize numbers
    assert fake.received == [
        (
            LEDGER_PATH,
            {
                "ApiKey": API_KEY,
                "SecretKey": SECRET_KEY,
                "SmsType": "2",
                "From": "2025-01-01 06:00:00",
                "To": "2025-01-02 18:00:00",
                "Page": 1,
                "PageSize": 500,
            },
        )
    ]
    # and both rows read, SmsId a number made text, SentTime the moment in UTC
    assert page == LedgerPage(
        count_total=2,
        rows=[
            LedgerRow("29028845", "35781d6c25524e40a035c26663189549", 5, 0, SAMPLE_SENT_AT, 2),
            LedgerRow(
                "29028845", "0aac72e0-ba9b-4348-8530-d18d105778db18", 5, 1, SAMPLE_SENT_AT, 2
            ),
        ],
        skipped=[],
    )


def test_aware_datetimes_are_sent_in_vietnam_time():
    # given a range given in UTC and in another zone
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, page_of())
    from_utc = datetime(2025, 1, 1, 23, 30, 15, 999000, tzinfo=UTC)
    to_paris = datetime(2025, 1, 2, 1, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    # when asked
    ask(fake, sent_data(from_local=from_utc, to_local=to_paris))
    # expect Vietnam time (UTC+7), to the second, the next day for the first
    _, body = fake.received[0]
    assert (body["From"], body["To"]) == ("2025-01-02 06:30:15", "2025-01-02 07:00:00")


def test_paging_fields_are_sent_and_count_total_is_the_whole_range():
    # given eSMS answering page 3 of 2-row pages of a 5-row range: its last, partial page
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, page_of(row(SmsId=5), count_total=5))
    # when asked for that page
    page = ask(fake, sent_data(page=3, page_size=2))
    # expect the page asked, and eSMS's total kept for the range
    _, body = fake.received[0]
    assert (body["Page"], body["PageSize"]) == (3, 2)
    assert page.count_total == 5 and [r.sms_id for r in page.rows] == ["5"]


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"page_size": 501}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"sms_type": True}, "sms_type"),
        ({"from_local": TO_LOCAL, "to_local": FROM_LOCAL}, "after"),
    ],
)
def test_bad_arguments_are_refused_before_sending(arguments, words):
    fake = FakeEsms()
    raised = ask(fake, sent_data(**arguments))
    assert isinstance(raised, ValueError) and words in str(raised)
    assert fake.received == []


def test_count_total_and_fields_may_be_strings_as_the_table_types_them():
    text = json.dumps(
        {
            "CodeResult": 100,
            "CountTotal": "1",
            "SentData": [
                row(SmsId="77", SendStatus="5", SendResult="1", SmsType="24", ReferenceId="r")
            ],
        }
    )
    assert parse_ledger_page(text) == LedgerPage(
        1, [LedgerRow("77", "r", 5, 1, SAMPLE_SENT_AT, 24)], []
    )


# --- SentTime ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "moment"),
    [
        ("/Date(1705484048995+0700)/", SAMPLE_SENT_AT),
        ("/Date(1705484048995)/", SAMPLE_SENT_AT),  # no offset: the same moment
        ("/Date(1705484048995-0500)/", SAMPLE_SENT_AT),  # the offset moves nothing
        (" /Date(1705484048995+0700)/ ", SAMPLE_SENT_AT),
        (1705484048995, SAMPLE_SENT_AT),  # a bare number of ms
        ("/Date(-62135596800000)/", None),  # .NET's DateTime.MinValue: no time
        ("/Date(0+0700)/", None),
        ("/Date(999999999999999999)/", None),  # past year 9999
        ("/Date(abc)/", None),
        ("2024-01-17 16:34:08", None),
        ("", None),
        (None, None),
        (True, None),
        (1.5e12, None),
        ({"ms": 1}, None),
    ],
)
def test_sent_time_is_read_leniently(raw, moment):
    assert sent_moment(raw) == moment


# --- what a row settles -----------------------------------------------------------------------


def ledger_row(send_status: int | None, send_result: int | None) -> LedgerRow:
    return LedgerRow("1", "ref", send_status, send_result, None, 25)


def test_done_and_successful_is_sent():
    outcome = outcome_of_ledger(ledger_row(5, 1))
    assert outcome is not None
    assert (outcome.status, outcome.send_status, outcome.error) == (SENT, 5, None)
    assert outcome.terminal and outcome.state_key == "sent:5"


def test_done_and_failed_is_failed_with_the_ledger_named():
    outcome = outcome_of_ledger(ledger_row(5, 0))
    assert outcome is not None
    assert (outcome.status, outcome.send_status) == (FAILED, 5)
    assert outcome.error == {"code": None, "message": LEDGER_FAILED_MESSAGE}


@pytest.mark.parametrize("send_result", [0, 2, None])
def test_rejected_is_failed(send_result):
    outcome = outcome_of_ledger(ledger_row(4, send_result))
    assert outcome is not None
    assert (outcome.status, outcome.state_key) == (FAILED, "failed:4")
    assert outcome.error == {"code": None, "message": "rejected"}


@pytest.mark.parametrize(
    ("send_status", "send_result"),
    [(5, 2), (5, None), (5, 9), (0, 2), (1, 2), (2, 2), (7, 2), (7, 1), (None, 1), (3, 1)],
)
def test_anything_not_decided_settles_nothing(send_status, send_result):
    assert outcome_of_ledger(ledger_row(send_status, send_result)) is None


# --- codes and failures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [("160", RateLimited), ("101", AuthError), (140, AuthError), ("999", UnexpectedCode)],
)
def test_codes_raise_their_errors_keeping_esms_code_and_message(code, error):
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, {"CodeResult": code, "ErrorMessage": "Authorize Failed."})
    raised = ask(fake, sent_data())
    assert type(raised) is error
    assert (raised.code, raised.esms_message) == (int(code), "Authorize Failed.")


@pytest.mark.parametrize("code", ["105", 105])
def test_nothing_found_is_an_empty_page(code):
    # eSMS's code table lists 105 ("not found") for this function
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, {"CodeResult": code, "ErrorMessage": "Không tìm thấy"})
    assert ask(fake, sent_data()) == LedgerPage(0, [], [])


def test_a_page_past_the_end_is_empty_with_the_total():
    assert parse_ledger_page(json.dumps(page_of(count_total=7))) == LedgerPage(7, [], [])
    no_data = json.dumps({"CodeResult": "100", "CountTotal": 0, "SentData": None})
    assert parse_ledger_page(no_data) == LedgerPage(0, [], [])


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (200, "{not json", MalformedResponse),
        (200, "<html>Service Unavailable</html>", MalformedResponse),
        (200, "[1, 2]", MalformedResponse),
        (200, '{"SentData": []}', MalformedResponse),
        (200, '{"CodeResult": "100", "SentData": []}', MalformedResponse),  # no CountTotal
        (200, '{"CodeResult": "100", "CountTotal": -1, "SentData": []}', MalformedResponse),
        (200, '{"CodeResult": "100", "CountTotal": 1, "SentData": {"a": 1}}', MalformedResponse),
        (500, "<html>oops</html>", ServerError),
    ],
)
def test_malformed_answers_become_typed_errors(status, body, error):
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, body, status)
    raised = ask(fake, sent_data())
    assert type(raised) is error
    shown = str(raised) + repr(raised)
    assert API_KEY not in shown and SECRET_KEY not in shown


def test_rows_without_an_sms_id_are_skipped_by_their_field_names_only():
    answer = page_of(
        row(SmsId=None),
        row(SmsId=""),
        row(SmsId=True),
        row(SmsId=1.5),
        "a text",
        row(SmsId="ok", ReferenceId=42, SendStatus="x", SentTime=None, SmsType=None),
        count_total=6,
    )
    page = parse_ledger_page(json.dumps(answer))
    assert page.rows == [LedgerRow("ok", "42", None, 1, None, None)]
    assert [reason.split(":")[0] for reason in page.skipped] == [
        "row 0",
        "row 1",
        "row 2",
        "row 3",
        "row 4",
    ]
    assert "no SmsId (a NoneType)" in page.skipped[0] and "Phone" in page.skipped[0]
    assert page.skipped[4] == "row 4: a str, not an object"
    shown = repr(page)
    assert "0912345678" not in shown and "482913" not in shown and "Chiến" not in shown


# --- personal data ----------------------------------------------------------------------------


def test_phone_numbers_and_texts_are_never_kept():
    # given the sample answer, whose rows carry a phone number, a text and a campaign
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, LEDGER_SAMPLE)
    # when read
    page = ask(fake, sent_data())
    # expect none of them in the parsed objects, their repr or their fields
    shown = repr(page) + str(page) + "".join(repr(vars(r)) for r in page.rows)
    assert LEDGER_SAMPLE_PHONE not in shown and LEDGER_SAMPLE_TEXT not in shown
    assert "Chiến dịch" not in shown  # the campaign: dropped too
    assert not hasattr(page.rows[0], "record")


@pytest.mark.parametrize(
    ("status", "cut"),
    [
        (200, 200),  # a cut-off answer: not JSON
        (200, -40),
        (502, None),  # a proxy echoing the answer back with an error status
    ],
)
def test_an_error_never_quotes_the_answer(status, cut):
    # given an answer carrying a phone number and a text, broken or refused
    body = LEDGER_SAMPLE if cut is None else LEDGER_SAMPLE[:cut]
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, body, status)
    # when read
    raised = ask(fake, sent_data())
    # expect an error that names no phone number and no text
    assert isinstance(raised, MalformedResponse | ServerError)
    shown = str(raised) + repr(raised) + str(raised.esms_message)
    assert LEDGER_SAMPLE_PHONE not in shown and "Cam on" not in shown


def test_a_row_with_an_unprintable_reference_id_keeps_none():
    page = parse_ledger_page(json.dumps(page_of(row(ReferenceId="a\nb"))))
    assert page.rows[0].reference_id is None


# --- the rate gate ----------------------------------------------------------------------------


def test_the_gate_opens_before_the_body_goes_then_on_sent_runs():
    fake = FakeEsms()
    fake.answer(LEDGER_PATH, LEDGER_SAMPLE)
    calls: list[tuple[str, int]] = []

    def gate() -> bool:
        calls.append(("gate", len(fake.received)))
        return True

    page = ask(fake, sent_data(gate=gate, on_sent=lambda: calls.append(("sent", 0))))
    assert calls == [("gate", 0), ("sent", 0)]
    assert isinstance(page, LedgerPage) and len(fake.received) == 1


def test_a_closed_gate_sends_nothing():
    fake = FakeEsms()
    raised = ask(fake, sent_data(gate=lambda: False))
    assert isinstance(raised, NotSent)
    assert fake.received == []
