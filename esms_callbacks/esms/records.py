"""What one eSMS callback record says about a message: its status, error and decoded fields.

Records come from a remote service: every field is read defensively, never trusted to exist or
to have the documented type.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only: int() refuses other "digits"

PENDING, SENT, FAILED, NOT_FOUND, EXPIRED = "pending", "sent", "failed", "not_found", "expired"
DELIVERED = "delivered"  # Zalo says the message reached the phone (ESMS_TRACK_DELIVERY=on)
STATUSES = (PENDING, SENT, FAILED, NOT_FOUND, EXPIRED, DELIVERED)  # every status an event may have
# `sent` is terminal unless delivery is tracked (Outcome.awaits_delivery).
TERMINAL_STATUSES = frozenset({SENT, FAILED, EXPIRED, DELIVERED})

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
    awaits_delivery: bool = False  # sent, and delivery is tracked: not terminal yet
    delivered_at: datetime | None = None  # when Zalo says it reached the phone (delivered)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES and not self.awaits_delivery

    @property
    def state_key(self) -> str:
        """Name the state; the same RefId in the same state gives the same event_id."""
        return state_key_of(self.status, self.send_status)


NOT_FOUND_OUTCOME = Outcome(NOT_FOUND, None, None, None)
EXPIRED_OUTCOME = Outcome(EXPIRED, None, {"code": None, "message": "gave up after max age"}, None)


def given_up_outcome(code: int | None, reason: str) -> Outcome:
    """A RefId eSMS fails every request for: terminal, `expired`, with why in its error."""
    return Outcome(EXPIRED, None, {"code": code, "message": reason}, None)


def decided_outcome(state_key: str, track_delivery: bool = False) -> Outcome | None:
    """The terminal outcome a recorded state key names, or None if it names none (`sent`
    names none while delivery is tracked).

    A terminal state is recorded before its event is published; whoever holds the RefId
    after a crash publishes that state again (same event_id), never a different one."""
    status, _, send_status = state_key.partition(":")
    if status not in TERMINAL_STATUSES or (status == SENT and track_delivery):
        return None
    if status == EXPIRED:
        return EXPIRED_OUTCOME
    number = int_or_none(send_status)
    error = {"code": None, "message": "rejected" if number == 4 else "delivery failed"}
    return Outcome(status, number, error if status == FAILED else None, None)


# How far along a state is. A RefId's state only moves to a higher rank, so no state comes back
# after a later one (deduplicating by event_id stays safe) and a found RefId is never
# `not_found` again. Unknown SendStatus values rank between 2 and 7; `delivered` comes after
# `sent`, whichever source saw either.
NOT_FOUND_RANK, UNKNOWN_PENDING_RANK, TERMINAL_RANK, DELIVERED_RANK = 0, 3, 5, 6
PENDING_RANKS = {1: 1, 2: 2, 5: 4, 7: 4}  # 5 not final yet (QueryZnsStatus) is as far as 7


def state_key_of(status: str, send_status: int | None) -> str:
    """The name of a state (`pending:7`, `sent:5`, `not_found:`), as state_rank reads it."""
    return f"{status}:{'' if send_status is None else send_status}"


def state_rank(state_key: str) -> int:
    """The rank of a state key ('' when none was published yet ranks lowest)."""
    status, _, send_status = state_key.partition(":")
    if status == DELIVERED:
        return DELIVERED_RANK
    if status in TERMINAL_STATUSES:
        return TERMINAL_RANK
    if status == PENDING:
        number = int_or_none(send_status)
        return PENDING_RANKS.get(number, UNKNOWN_PENDING_RANK) if number is not None else 1
    return NOT_FOUND_RANK if status else -1


def progressed(previous_key: str, seen: Outcome, track_delivery: bool = False) -> Outcome:
    """What a RefId's state becomes when `seen` is observed after `previous_key`, the state
    it last had (every source's, through the settle step): a terminal state recorded before
    a crash stands; otherwise the state only moves forward, and an observation that would
    move it back (a RefId missing from one answer, a late push of SendStatus 1 after a 7)
    leaves it where it was, without an event. With `track_delivery`, `sent` awaits
    `delivered` (not terminal)."""
    if track_delivery and seen.status == SENT:
        seen = replace(seen, awaits_delivery=True)
    decided = decided_outcome(previous_key, track_delivery)
    if decided is not None:
        return decided if decided.state_key != seen.state_key else seen
    if previous_key and state_rank(seen.state_key) <= state_rank(previous_key):
        if seen.state_key == previous_key:
            return seen  # the same state again, with the record as now received
        status, _, send_status = previous_key.partition(":")
        return Outcome(status, int_or_none(send_status), None, None, awaits_delivery=status == SENT)
    return seen


def outcome_of(record: dict[str, Any]) -> Outcome:
    """Map a record to a status: 5 done (sent/failed), 4 rejected, 1/2/7 and unknown pending."""
    send_status = int_or_none(record.get("SendStatus"))
    failed_count = int_or_none(record.get("SendFailed")) or 0
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
    type_id = int_or_none(record.get("TypeId"))
    telco_id = int_or_none(record.get("Telcoid"))
    send_status = int_or_none(record.get("SendStatus"))
    if error_info is None:
        error_info = parse_error_info(record.get("ErrorInfo"))
    return {
        "type": TYPE_NAMES.get(type_id) if type_id is not None else None,
        "telco": TELCO_NAMES.get(telco_id) if telco_id is not None else None,
        "send_status": SEND_STATUS_NAMES.get(send_status) if send_status is not None else None,
        "error_info": error_info.as_dict() if error_info else None,
    }


def int_or_none(value: object) -> int | None:
    """An integer from eSMS's number or string of ASCII digits; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value.strip())
    return None
