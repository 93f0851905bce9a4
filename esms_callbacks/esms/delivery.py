"""eSMS's GetZaloMessageStatus: whether Zalo got a ZNS onto the user's phone, and when.

"Sent" (SendStatus 5) means Zalo accepted the message; only this endpoint says it reached the
phone. It is asked by the Zalo message id (GetCallback's Partnerids, QueryZnsStatus's
ZaloMsgId) and the OA.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from esms_callbacks.errors import MalformedResponse
from esms_callbacks.esms.answers import load_object, result_code, text_field
from esms_callbacks.esms.codes import SUCCESS_CODE, error_for_code
from esms_callbacks.esms.records import int_or_none

ZALO_MESSAGE_STATUS_PATH = "/MainService.svc/json/GetZaloMessageStatus"
NO_SUCH_MESSAGE, AT_ZALO, DELIVERED = -1, 0, 1  # Data.status


@dataclass(frozen=True)
class DeliveryStatus:
    """GetZaloMessageStatus's Data; a field eSMS left out or mistyped is None."""

    status: int | None  # -1 no such message, 0 at Zalo's server, 1 on the user's phone
    delivered_at_ms: int | None  # delivery_time: ms since the epoch
    message: str | None  # eSMS's words for the status
    record: dict[str, Any]  # the Data as received


def parse_delivery_answer(text: str) -> DeliveryStatus:
    """Parse a GetZaloMessageStatus body; codes other than 100 raise their error."""
    payload = load_object(text)
    code = result_code(payload, "CodeResult", text)
    if code != SUCCESS_CODE:
        raise error_for_code(code, text_field(payload, "ErrorMessage"))
    data = payload.get("Data")
    if not isinstance(data, dict):
        raise MalformedResponse(f"eSMS answer's Data is a {type(data).__name__}, not an object")
    delivered_at_ms = int_or_none(data.get("delivery_time"))
    message = data.get("message")
    return DeliveryStatus(
        status=int_or_none(data.get("status")),
        # 0 or less is no time at all: a message not delivered has no delivery time
        delivered_at_ms=delivered_at_ms if delivered_at_ms and delivered_at_ms > 0 else None,
        message=message if isinstance(message, str) else None,
        record=data,
    )


def delivery_moment(status: DeliveryStatus) -> datetime | None:
    """When the message reached the phone (aware, UTC); None unless delivered at a known,
    representable time."""
    if status.status != DELIVERED or status.delivered_at_ms is None:
        return None
    try:
        seconds, ms = divmod(status.delivered_at_ms, 1000)  # exact: no float rounding
        return datetime.fromtimestamp(seconds, tz=UTC) + timedelta(milliseconds=ms)
    except (OverflowError, OSError, ValueError):
        return None  # a time past year 9999 is garbage, not a moment
