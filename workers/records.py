"""What one eSMS callback record says about a message: its status, error and decoded fields.

Records come from a remote service: every field is read defensively, never trusted to exist or
to have the documented type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only: int() refuses other "digits"

PENDING, SENT, FAILED, NOT_FOUND, EXPIRED = "pending", "sent", "failed", "not_found", "expired"
TERMINAL_STATUSES = frozenset({SENT, FAILED, EXPIRED})

SEND_STATUS_NAMES = {
    1: "awaiting approval",
    2: "waiting to send",
    4: "rejected",
    5: "done",
    7: "sent, awaiting the delivery report",
}
TYPE_NAMES = {24: "Zalo priority", 25: "Zalo normal"}
TELCO_NAMES = {
    1: "Viettel",
    2: "Mobifone",
    3: "Vinaphone",
    4: "Vietnamobile",
    5: "Gmobile",
    6: "Itel",
    7: "Reddi",
}


@dataclass(frozen=True)
class ErrorInfo:
    """eSMS's ErrorInfo: a Zalo error object at the front, leftover text kept as `detail`."""

    code: int | None
    message: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "detail": self.detail}


def parse_error_info(raw: object) -> ErrorInfo | None:
    """Parse ErrorInfo leniently; None when there is no error text at all. Never raises."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        try:
            raw = json.dumps(raw)
        except (TypeError, ValueError):
            raw = repr(raw)
    text = raw.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            obj, end = json.JSONDecoder().raw_decode(text)
        except (ValueError, RecursionError):
            obj, end = None, 0
        if isinstance(obj, dict):
            code = obj.get("error")
            message = obj.get("message")
            return ErrorInfo(
                code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                message=message if isinstance(message, str) else None,
                detail=text[end:].strip(),
            )
    return ErrorInfo(code=None, message=None, detail=text)


@dataclass(frozen=True)
class Outcome:
    """The status one answer implies for a RefId."""

    status: str
    send_status: int | None
    error: dict[str, Any] | None
    record: dict[str, Any] | None
    error_info: ErrorInfo | None = None  # the record's ErrorInfo, parsed once

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def state_key(self) -> str:
        """Name the state; the same RefId in the same state gives the same event_id."""
        return f"{self.status}:{'' if self.send_status is None else self.send_status}"


NOT_FOUND_OUTCOME = Outcome(NOT_FOUND, None, None, None)
EXPIRED_OUTCOME = Outcome(EXPIRED, None, {"code": None, "message": "gave up after max age"}, None)


def decided_outcome(state_key: str) -> Outcome | None:
    """The terminal outcome a recorded state key names, or None if it names none.

    A terminal state is recorded before its event is published; whoever holds the RefId
    after a crash publishes that state again (same event_id), never a different one."""
    status, _, send_status = state_key.partition(":")
    if status not in TERMINAL_STATUSES:
        return None
    if status == EXPIRED:
        return EXPIRED_OUTCOME
    number = _int_or_none(send_status)
    error = {"code": None, "message": "rejected" if number == 4 else "delivery failed"}
    return Outcome(status, number, error if status == FAILED else None, None)


def outcome_of(record: dict[str, Any]) -> Outcome:
    """Map a record to a status: 5 done (sent/failed), 4 rejected, 1/2/7 and unknown pending."""
    send_status = _int_or_none(record.get("SendStatus"))
    failed_count = _int_or_none(record.get("SendFailed")) or 0
    error_info = parse_error_info(record.get("ErrorInfo"))
    if send_status == 5:
        status = FAILED if failed_count > 0 else SENT
    elif send_status == 4:
        status = FAILED
    else:
        # Unknown SendStatus values stay non-terminal: asked again until they settle or expire.
        status = PENDING
    error = None
    if status == FAILED:
        error = {
            "code": error_info.code if error_info else None,
            "message": (
                error_info.message
                if error_info and error_info.message
                else "rejected"
                if send_status == 4
                else "delivery failed"
            ),
        }
    return Outcome(status, send_status, error, record, error_info)


def decode(record: dict[str, Any], error_info: ErrorInfo | None = None) -> dict[str, Any]:
    """Human-readable names for a record's numeric fields, and its parsed ErrorInfo (given
    when the caller parsed it already: outcome_of does)."""
    type_id = _int_or_none(record.get("TypeId"))
    telco_id = _int_or_none(record.get("Telcoid"))
    send_status = _int_or_none(record.get("SendStatus"))
    if error_info is None:
        error_info = parse_error_info(record.get("ErrorInfo"))
    return {
        "type": TYPE_NAMES.get(type_id) if type_id is not None else None,
        "telco": TELCO_NAMES.get(telco_id) if telco_id is not None else None,
        "send_status": SEND_STATUS_NAMES.get(send_status) if send_status is not None else None,
        "error_info": error_info.as_dict() if error_info else None,
    }


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None
