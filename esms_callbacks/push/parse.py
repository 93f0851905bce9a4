"""What one eSMS push (a GET to the CallbackUrl) says, checked and turned into GetCallback's shape.

eSMS pushes a final status as query parameters with their own names (lowercase `telcoid`,
`phonenumber`, `oaid`...) and `error_info` wrapped in quotes as a JSON string. The record built
here uses GetCallback's names and types, so a pushed and a polled status go through the same
`records.outcome_of` and reach consumers in one shape.

The receiver reads a push with `parse_esms_push`, which takes only what eSMS sends with every
status (a push carries no signature: a forger who learnt the URL must not settle a RefId with
`SMSID=..&oaid=..&SendStatus=5`). eSMS's record has these as numbers, never null (GetCallback's
sample in docs/esms/getcallback.md, lines 43-50), and its pushes carry them (the real push in
esms_callbacks/simulator/push.py):

- `SMSID`, `oaid`: eSMS ids; `SendStatus`: a whole number.
- `SendFailed`, `SendSuccess`, `TotalReceiver`, `TotalSent`, `TypeId`: whole numbers >= 0.
- `SendSuccess + SendFailed`, counts of the messages (lines 68-69, 73: "Tổng số tin thất bại /
  thành công" of "Tổng số tin"), is at most `TotalReceiver`; for `SendStatus` 5 ("Đã gửi",
  done, line 71) it is `TotalReceiver`: every message sent or failed, as in both of eSMS's
  examples. `TotalSent` is not checked against them: for the same failed message it is 1 in
  the sample and 0 in the real push.

Not required: fields eSMS leaves null or empty (`RequestId` is null in the sample, `partnerids`
and `RequestId` empty in the real push, `error_info` empty when there is no error) and the
descriptive ones (`TotalPrice`, `telcoid`, `phonenumber`, `tempid`): kept in `record` when given.
`parse_push` builds the record without these checks, for pushes made in code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from esms_callbacks.errors import MalformedPush, printable
from esms_callbacks.esms.validation import MAX_OA_ID_CHARS, MAX_REF_ID_CHARS

# push parameter -> GetCallback record key
PUSH_FIELDS = {
    "SMSID": "SMSID",
    "SendFailed": "SendFailed",
    "SendSuccess": "SendSuccess",
    "SendStatus": "SendStatus",
    "TotalPrice": "TotalPrice",
    "TotalReceiver": "TotalReceiver",
    "TotalSent": "TotalSent",
    "RequestId": "RequestId",
    "TypeId": "TypeId",
    "telcoid": "Telcoid",
    "phonenumber": "PhoneNumber",
    "partnerids": "Partnerids",
    "error_info": "ErrorInfo",
    "oaid": "OAId",
    "tempid": "ZnsTempId",
}
INTEGER_FIELDS = frozenset(
    {"SendFailed", "SendSuccess", "SendStatus", "TotalReceiver", "TotalSent", "TypeId", "Telcoid"}
)
# What eSMS sends with every status (see the module's docstring), in eSMS's order.
REQUIRED_COUNTS = ("SendFailed", "SendSuccess", "TotalReceiver", "TotalSent", "TypeId")
DONE = 5  # SendStatus: every message of it sent or failed
MAX_PARAMS = 40  # eSMS sends 15; room for fields it may add, not for a flood of them
MAX_VALUE_CHARS = 4000  # error_info is the long one: a Zalo error and a sentence
_INTEGER = re.compile(r"-?[0-9]{1,9}")
_COUNT = re.compile(r"[0-9]{1,9}")
_DECIMAL = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,6})?")
_ID = re.compile(r"[\x21-\x7e]+")  # printable ASCII without spaces, as producers' RefIds


@dataclass(frozen=True)
class Push:
    ref_id: str
    oa_id: str
    record: dict[str, Any]  # GetCallback's names and types


def parse_push(params: Iterable[tuple[str, str]]) -> Push:
    """Check a push's query parameters; raise MalformedPush naming the first problem."""
    return _push_of(_read(params))


def parse_esms_push(params: Iterable[tuple[str, str]]) -> Push:
    """A push as the receiver takes it: `parse_push`, and only with what eSMS sends with every
    status, its counts agreeing (the module's docstring); else MalformedPush saying why."""
    seen = _read(params)
    push = _push_of(seen)  # the ids and SendStatus first
    _check_counts(seen, int(seen["SendStatus"]))
    return push


def _read(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    seen: dict[str, str] = {}
    for name, value in params:
        if len(seen) >= MAX_PARAMS:
            raise MalformedPush(f"more than {MAX_PARAMS} parameters")
        if name in seen:
            raise MalformedPush(f"parameter {printable(name, 40)} given twice")
        if len(value) > MAX_VALUE_CHARS:
            raise MalformedPush(
                f"parameter {printable(name, 40)} is {len(value)} characters; at most "
                f"{MAX_VALUE_CHARS}"
            )
        seen[name] = value
    return seen


def _push_of(seen: dict[str, str]) -> Push:
    ref_id = _required_id(seen, "SMSID", MAX_REF_ID_CHARS)
    oa_id = _required_id(seen, "oaid", MAX_OA_ID_CHARS)
    if not _INTEGER.fullmatch(seen.get("SendStatus", "")):
        raise MalformedPush(
            f"SendStatus must be a whole number, got {printable(seen.get('SendStatus', ''), 20)}"
        )
    record: dict[str, Any] = {}
    for push_name, key in PUSH_FIELDS.items():
        if push_name in seen:
            record[key] = _typed(key, seen[push_name])
    return Push(ref_id, oa_id, record)


def _check_counts(seen: dict[str, str], send_status: int) -> None:
    missing = [name for name in REQUIRED_COUNTS if name not in seen]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        pronoun = "it" if len(missing) == 1 else "them"
        raise MalformedPush(
            f"{', '.join(missing)} {verb} missing (eSMS sends {pronoun} with every status)"
        )
    for name in REQUIRED_COUNTS:
        if not _COUNT.fullmatch(seen[name]):
            raise MalformedPush(
                f"{name} must be a whole number >= 0, got {printable(seen[name], 20)}"
            )
    success, failed = int(seen["SendSuccess"]), int(seen["SendFailed"])
    total = int(seen["TotalReceiver"])
    counted = f"SendSuccess ({success}) + SendFailed ({failed})"
    if send_status == DONE and success + failed != total:
        raise MalformedPush(
            f"{counted} is not TotalReceiver ({total}): a done push (SendStatus {DONE}) counts "
            "every message as sent or failed"
        )
    if success + failed > total:
        raise MalformedPush(f"{counted} is more than TotalReceiver ({total}), the messages")


def _required_id(params: dict[str, str], name: str, max_chars: int) -> str:
    value = params.get(name, "")
    if not value:
        raise MalformedPush(f"{name} is missing")
    if len(value) > max_chars or not _ID.fullmatch(value):
        raise MalformedPush(
            f"{name}={printable(value, 40)} is not an eSMS id (printable ASCII without spaces, "
            f"at most {max_chars} characters)"
        )
    return value


def _typed(key: str, value: str) -> Any:
    """GetCallback's types: numbers as numbers, empty as null, ErrorInfo unwrapped."""
    if key == "ErrorInfo":
        return unwrap_error_info(value)
    if value == "":
        return None
    if key in INTEGER_FIELDS and _INTEGER.fullmatch(value):
        return int(value)
    if key == "TotalPrice" and _DECIMAL.fullmatch(value):
        return float(value)
    return value  # kept as given: outcome_of reads every field defensively


def unwrap_error_info(value: str) -> str | None:
    """`"{\\"error\\":-114,...}"` (a JSON string, as eSMS pushes it) -> the text inside."""
    text = value.strip()
    if not text:
        return None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            inner = json.loads(text)
        except ValueError:
            inner = text[1:-1]  # quoted but not valid JSON: drop the quotes only
        return inner if isinstance(inner, str) else text
    return text
