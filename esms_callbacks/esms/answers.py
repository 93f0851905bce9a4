"""What every eSMS answer shares: a JSON object with a result code, and text from eSMS made
safe for a log line or an error."""

from __future__ import annotations

import json
import re
from typing import Any

from esms_callbacks.errors import MalformedResponse, printable


def load_object(text: str) -> dict[str, Any]:
    """The answer's JSON object; MalformedResponse if it is not JSON or not an object."""
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        raise MalformedResponse(f"eSMS answer is not JSON: {snippet(text)}") from None
    if not isinstance(payload, dict):
        raise MalformedResponse(f"eSMS answer is not a JSON object: {snippet(text)}")
    return payload


def result_code(payload: dict[str, Any], field: str, text: str) -> int:
    """The answer's result code from `field` (GetCallback's `Code`, the REST API's
    `CodeResult`), a number or a string of digits: eSMS's pages show both."""
    code = payload.get(field)
    if isinstance(code, str) and code.strip().isascii() and code.strip().isdigit():
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool):
        raise MalformedResponse(f"eSMS answer has no numeric {field}: {snippet(text)}")
    return code


def text_field(payload: dict[str, Any], field: str) -> str:
    """A text field of the answer (eSMS's message), '' when missing or not text."""
    value = payload.get(field)
    return value if isinstance(value, str) else ""


# What eSMS's text may carry that a log line must not: a phone number (a long run of digits)
# and a URL (a record's CallbackUrl holds the push token).
_PHONE_LIKE = re.compile(r"\+?\d{9,}")
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]*")


def snippet(text: str, limit: int = 200) -> str:
    """eSMS's text for a log line or an error (an HTML page, a cut-off answer): whitespace
    folded, phone-like digit runs and URLs blanked, the rest escaped."""
    folded = " ".join(text[: limit * 4].split())
    scrubbed = _PHONE_LIKE.sub("<digits>", _URL.sub("<url>", folded))
    return printable(scrubbed, limit)
