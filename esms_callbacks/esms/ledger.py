"""eSMS's GetSmsSentData_V2: the account's own ledger of messages created in a time range, a
page at a time, and the outcome a row implies.

Every message of the account is in it, whether or not anyone told this project about it: the
ledger to reconcile against. Its rows carry the phone number and the message text (and the
campaign): those are dropped here, at parse, and never kept, logged or quoted in an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from esms_callbacks.errors import MalformedResponse, printable
from esms_callbacks.esms.answers import text_field
from esms_callbacks.esms.codes import SUCCESS_CODE, error_for_code
from esms_callbacks.esms.records import FAILED, SENT, Outcome, int_or_none

SENT_DATA_PATH = "/MainService.svc/json/GetSmsSentData_V2"
MAX_PAGE_SIZE = 500  # eSMS's page: "tối đa 500 tin nhắn"
FIRST_PAGE = 1  # eSMS's sample asks Page 1 first
ESMS_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # From and To are eSMS's local time
ESMS_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # eSMS's "yyyy-MM-dd HH:mm:ss"
# Code 105 ("no message found") is listed for this function in eSMS's code table: an empty
# range is an answer, not a failure.
NOTHING_FOUND_CODE = 105

# SendStatus and SendResult as eSMS's page lists them.
SEND_STATUS_REJECTED, SEND_STATUS_DONE = 4, 5
SEND_RESULT_FAILED, SEND_RESULT_SENT, SEND_RESULT_UNDETERMINED = 0, 1, 2
LEDGER_FAILED_MESSAGE = "delivery failed (eSMS's ledger)"

# .NET's JSON date: ms since the epoch (UTC), then the sender's offset, which moves nothing.
_DOTNET_DATE = re.compile(r"/Date\((-?\d{1,18})([+-]\d{4})?\)/")


@dataclass(frozen=True)
class LedgerRow:
    """One message of eSMS's ledger, without its personal data; a field eSMS left out or
    mistyped is None."""

    sms_id: str  # eSMS's id of the message in its portal (a number on eSMS's sample)
    reference_id: str | None  # the SMSID eSMS's send call returned: the RefId tracked here
    send_status: int | None  # 0 draft, 1 awaiting approval, 2 waiting, 4 rejected, 5 done, 7
    send_result: int | None  # 1 sent, 0 failed, 2 not determined yet
    sent_at: datetime | None  # SentTime, aware, UTC
    sms_type: int | None  # 24 Zalo priority, 25 Zalo normal, 1/2/8/23/26 other channels


@dataclass(frozen=True)
class LedgerPage:
    """One page of the ledger: eSMS's total for the whole range, this page's rows, and why
    any row was skipped (never its values)."""

    count_total: int
    rows: list[LedgerRow]
    skipped: list[str]


def ledger_request(
    sms_type: int, from_local: datetime, to_local: datetime, page: int, page_size: int
) -> dict[str, Any]:
    """The body of a GetSmsSentData_V2 request, credentials aside; raise ValueError on a bad
    argument, before anything is sent.

    Aware datetimes are converted to Vietnam time; naive ones are taken as Vietnam time.
    """
    if isinstance(sms_type, bool) or not isinstance(sms_type, int) or sms_type < 0:
        raise ValueError(f"sms_type must be eSMS's SmsType, a number such as 25, not {sms_type!r}")
    if isinstance(page, bool) or not isinstance(page, int) or page < FIRST_PAGE:
        raise ValueError(f"page must be an integer >= {FIRST_PAGE} (eSMS counts from 1)")
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise ValueError(f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, not {page_size}")
    from_text, to_text = esms_local_time(from_local), esms_local_time(to_local)
    if from_text > to_text:  # the format sorts as the time does
        raise ValueError(f"from_local ({from_text}) is after to_local ({to_text}), Vietnam time")
    return {
        # As eSMS's sample sends them: SmsType a string, Page and PageSize numbers.
        "SmsType": str(sms_type),
        "From": from_text,
        "To": to_text,
        "Page": page,
        "PageSize": page_size,
    }


def esms_local_time(moment: datetime) -> str:
    """`moment` as eSMS's From and To want it: Vietnam time, to the second (a naive datetime
    is taken as Vietnam time already)."""
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        moment = moment.astimezone(ESMS_ZONE)
    return moment.strftime(ESMS_TIME_FORMAT)


def parse_ledger_page(text: str) -> LedgerPage:
    """Parse a GetSmsSentData_V2 body; Code 105 (nothing found) is an empty page, other codes
    raise their error (esms.codes). No error quotes the body: it carries personal data."""
    payload = _load(text)
    code = int_or_none(payload.get("CodeResult"))
    if code is None:
        raise MalformedResponse(
            f"eSMS's ledger answer has no numeric CodeResult; {_fields(payload)}"
        )
    if code == NOTHING_FOUND_CODE:
        return LedgerPage(0, [], [])
    if code != SUCCESS_CODE:
        raise error_for_code(code, text_field(payload, "ErrorMessage"))
    count_total = int_or_none(payload.get("CountTotal"))
    if count_total is None or count_total < 0:
        raise MalformedResponse(f"eSMS's ledger answer has no CountTotal; {_fields(payload)}")
    data = payload.get("SentData")
    if data is None:
        data = []
    if not isinstance(data, list):
        raise MalformedResponse(f"eSMS's ledger SentData is a {type(data).__name__}, not a list")
    rows: list[LedgerRow] = []
    skipped: list[str] = []
    for index, item in enumerate(data):
        row = _row(item)
        if isinstance(row, LedgerRow):
            rows.append(row)
        else:
            skipped.append(f"row {index}: {row}")
    return LedgerPage(count_total, rows, skipped)


def outcome_of_ledger(row: LedgerRow) -> Outcome | None:
    """The final status a ledger row settles, or None when it settles none.

    SendStatus 5 with SendResult 1 is sent, with SendResult 0 failed; SendStatus 4 (rejected)
    is failed. Anything else, SendResult 2 (undetermined) and drafts included, is not final:
    the ledger only settles what eSMS has decided, other sources tell the way there."""
    if row.send_status == SEND_STATUS_REJECTED:
        return Outcome(FAILED, row.send_status, {"code": None, "message": "rejected"}, None)
    if row.send_status != SEND_STATUS_DONE:
        return None
    if row.send_result == SEND_RESULT_SENT:
        return Outcome(SENT, row.send_status, None, None)
    if row.send_result == SEND_RESULT_FAILED:
        error = {"code": None, "message": LEDGER_FAILED_MESSAGE}
        return Outcome(FAILED, row.send_status, error, None)
    return None


def sent_moment(raw: object) -> datetime | None:
    """SentTime, "/Date(1705484048995+0700)/", as an aware UTC datetime; None for anything
    else, for 0 or earlier (.NET's "no time") and for a moment past year 9999."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        ms: int | None = raw  # a bare number of ms, read as the same moment
    elif isinstance(raw, str) and (found := _DOTNET_DATE.fullmatch(raw.strip())):
        ms = int(found.group(1))
    else:
        ms = None
    if ms is None or ms <= 0:
        return None
    try:
        seconds, rest_ms = divmod(ms, 1000)  # exact: no float rounding
        return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(milliseconds=rest_ms)
    except (OverflowError, OSError, ValueError):
        return None


def _row(item: object) -> LedgerRow | str:
    """The row, or why it was skipped: its field names and types only, never a value."""
    if not isinstance(item, dict):
        return f"a {type(item).__name__}, not an object"
    sms_id = _identifier(item.get("SmsId"))
    if sms_id is None:
        return f"no SmsId (a {type(item.get('SmsId')).__name__}); {_fields(item)}"
    return LedgerRow(
        sms_id=sms_id,
        reference_id=_identifier(item.get("ReferenceId")),
        send_status=int_or_none(item.get("SendStatus")),
        send_result=int_or_none(item.get("SendResult")),
        sent_at=sent_moment(item.get("SentTime")),
        sms_type=int_or_none(item.get("SmsType")),
    )


def _identifier(value: object) -> str | None:
    """An id as text: eSMS documents strings, its sample gives SmsId as a number."""
    if isinstance(value, str):
        value = value.strip()
        return value if value and value.isprintable() and len(value) <= 200 else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _load(text: str) -> dict[str, Any]:
    """The answer's JSON object; MalformedResponse, without quoting it, if it is not one."""
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedResponse(
            f"eSMS's ledger answer is not JSON ({len(text)} characters; not quoted: it may "
            "carry phone numbers and message text)"
        ) from None
    if not isinstance(payload, dict):
        raise MalformedResponse(f"eSMS's ledger answer is a JSON {type(payload).__name__}")
    return payload


def _fields(item: dict[str, Any]) -> str:
    names = ", ".join(printable(str(name), 40) for name in list(item)[:30])
    return f"fields: {names or 'none'}"
