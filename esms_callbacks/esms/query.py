"""eSMS's QueryZnsStatus: one message's status by its SmsId, and the outcome it implies.

It answers for any ZNS (24, 25), sent with a CallbackUrl or not: the source for messages that
GetCallback knows nothing about. Its Data is read defensively, as GetCallback's records are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from esms_callbacks.errors import MalformedResponse, printable
from esms_callbacks.esms.answers import load_object, result_code, text_field
from esms_callbacks.esms.codes import (
    NO_DATA_CODE,
    NOT_FOUND_YET_CODE,
    SUCCESS_CODE,
    error_for_code,
)
from esms_callbacks.esms.records import (
    FAILED,
    PENDING,
    SENT,
    ErrorInfo,
    Outcome,
    int_or_none,
    parse_error_info,
)

QUERY_ZNS_STATUS_PATH = "/MainService.svc/json/QueryZnsStatus/"  # the trailing / is eSMS's
ZNS_SMS_TYPES = (24, 25)  # the only types it answers for: Zalo priority, Zalo normal
# ErrorInfo codes of eSMS's own, beside Zalo's.
SENT_ERROR_INFO = "0"
NOT_ONLINE_CODE = 1001
NOT_ONLINE_MESSAGE = "the user was not online in time"


@dataclass(frozen=True)
class ZnsStatus:
    """QueryZnsStatus's Data for one SmsId; a field eSMS left out or mistyped is None."""

    sms_id: str
    send_status: int | None  # 1 awaiting approval, 2 waiting to send, 5 done
    send_success: int | None
    send_failed: int | None
    final: bool  # FinalStatus: eSMS will not change this status any more
    error_info: str | None  # as given: "0" sent, "1001" not online in time, Zalo's error
    zalo_msg_id: str | None  # GetZaloMessageStatus's MessageId
    record: dict[str, Any]  # the Data as received


def parse_query_answer(text: str, sms_id: str) -> ZnsStatus | None:
    """Parse a QueryZnsStatus body asked for `sms_id`; None when eSMS has no data for it
    (Code 854 or 105, or a success without Data). Other codes raise their error (esms.codes)."""
    payload = load_object(text)
    code = result_code(payload, "CodeResult", text)
    if code in (NO_DATA_CODE, NOT_FOUND_YET_CODE):  # an answer: eSMS knows nothing of it yet
        return None
    if code != SUCCESS_CODE:
        raise error_for_code(code, text_field(payload, "ErrorMessage"))
    data = payload.get("Data")
    if data is None:
        return None
    if not isinstance(data, dict):
        raise MalformedResponse(f"eSMS answer's Data is a {type(data).__name__}, not an object")
    answered_id = data.get("SMSID")
    if isinstance(answered_id, str) and answered_id != sms_id:
        raise MalformedResponse(f"eSMS answered for another SMSID: {printable(answered_id)}")
    zalo_msg_id = data.get("ZaloMsgId")
    return ZnsStatus(
        sms_id=sms_id,
        send_status=int_or_none(data.get("SendStatus")),
        send_success=int_or_none(data.get("SendSuccess")),
        send_failed=int_or_none(data.get("SendFailed")),
        final=_is_final(data.get("FinalStatus")),
        error_info=_as_text(data.get("ErrorInfo")),
        zalo_msg_id=zalo_msg_id if isinstance(zalo_msg_id, str) and zalo_msg_id else None,
        record=data,
    )


def outcome_of_query(status: ZnsStatus) -> Outcome:
    """Map a QueryZnsStatus answer to a status, as outcome_of does a GetCallback record.

    Final and SendStatus 5: failed if SendFailed > 0, else sent. SendStatus 4 (rejected):
    failed. Anything else, SendStatus 5 with FinalStatus "0" included, is pending: eSMS may
    still change it."""
    error_info = query_error_info(status.error_info)
    send_status = status.send_status
    if send_status == 4:
        outcome = FAILED
    elif send_status == 5 and status.final:
        outcome = FAILED if (status.send_failed or 0) > 0 else SENT
    else:
        outcome = PENDING
    error = None
    if outcome == FAILED:
        fallback = "rejected" if send_status == 4 else "delivery failed"
        error = {
            "code": error_info.code if error_info else None,
            "message": error_info.message if error_info and error_info.message else fallback,
        }
    return Outcome(outcome, send_status, error, status.record, error_info)


def query_error_info(raw: str | None) -> ErrorInfo | None:
    """Parse QueryZnsStatus's ErrorInfo: None for "0" (sent) and null (not sent yet); a bare
    integer is a code (1001 eSMS's "not online in time", others Zalo's); anything else is read
    as GetCallback's ErrorInfo is (a Zalo error object, leftover text kept)."""
    if raw is None or raw.strip() in ("", SENT_ERROR_INFO):
        return None
    code = int_or_none(raw)
    if code is not None:
        message = NOT_ONLINE_MESSAGE if code == NOT_ONLINE_CODE else None
        return ErrorInfo(code=code, message=message, detail="")
    return parse_error_info(raw)


def _is_final(value: object) -> bool:
    """FinalStatus: documented as "1"/"0"; 1 and true read as final too."""
    if value is True:
        return True
    return int_or_none(value) == 1


def _as_text(value: object) -> str | None:
    """ErrorInfo as text: documented as a string, but a number or an object may come."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return None
