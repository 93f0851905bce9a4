"""Check task arguments before anything is queued (producer) and again in the worker."""

from __future__ import annotations

from dataclasses import dataclass

from esms_callbacks.errors import InvalidSubmission, printable

MAX_REF_ID_CHARS = 128
MAX_OA_ID_CHARS = 64
MAX_REFS_PER_CALL = 1_000_000
_ALLOWED = frozenset(chr(c) for c in range(0x21, 0x7F))  # printable ASCII, no spaces


@dataclass(frozen=True)
class Submission:
    ref_ids: list[str]  # de-duplicated, first occurrence order
    oa_id: str
    duplicates: int
    sms_type: int | None = None  # 24 Zalo priority, 25 Zalo normal: what QueryZnsStatus needs


SMS_TYPE_NAMES = {24: "Zalo priority", 25: "Zalo normal"}


def validate_submission(
    ref_ids: object,
    oa_id: object,
    unknown: dict[str, object] | None = None,
    sms_type: object = None,
) -> Submission:
    """Return the cleaned submission or raise InvalidSubmission naming the problem."""
    if unknown:
        # Names come from any send_task caller: quoted and escaped, so a log line that names
        # them cannot be forged or carry terminal escapes.
        names = ", ".join(printable(name, 40) for name in sorted(unknown)[:5])
        if len(unknown) > 5:
            names += f" and {len(unknown) - 5} more"
        raise InvalidSubmission(
            f"unexpected argument(s) {names}; fetch_callbacks takes "
            "ref_ids (a list of RefId strings), oa_id (a string), account and sms_type"
        )
    oa = _check_id(oa_id, "oa_id", MAX_OA_ID_CHARS)
    if isinstance(ref_ids, str | bytes) or not isinstance(ref_ids, list | tuple):
        raise InvalidSubmission(
            f"ref_ids must be a list of RefId strings, not {type(ref_ids).__name__}"
        )
    if not ref_ids:
        raise InvalidSubmission("ref_ids is empty; pass at least one RefId")
    if len(ref_ids) > MAX_REFS_PER_CALL:
        raise InvalidSubmission(
            f"ref_ids has {len(ref_ids)} RefIds; pass at most "
            f"{MAX_REFS_PER_CALL} per call (split the list)"
        )
    cleaned = [_check_id(ref, f"ref_ids[{i}]", MAX_REF_ID_CHARS) for i, ref in enumerate(ref_ids)]
    unique = list(dict.fromkeys(cleaned))
    return Submission(unique, oa, len(cleaned) - len(unique), _check_sms_type(sms_type))


def _check_sms_type(value: object) -> int | None:
    """The messages' SmsType (QueryZnsStatus asks it), optional: 24, 25, or their text."""
    if value is None:
        return None
    plain = isinstance(value, int | str) and not isinstance(value, bool)
    text = str(value).strip() if plain else ""
    if text in ("24", "25"):
        return int(text)
    shown = printable(repr(value), 40)
    raise InvalidSubmission(f"sms_type must be 24 (Zalo priority) or 25 (Zalo normal), not {shown}")


def _check_id(value: object, name: str, max_chars: int) -> str:
    if value is None:
        raise InvalidSubmission(f"{name} is missing")
    if not isinstance(value, str):
        raise InvalidSubmission(f"{name} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise InvalidSubmission(f"{name} is blank")
    if len(value) > max_chars:
        raise InvalidSubmission(f"{name} is {len(value)} characters long; at most {max_chars}")
    if not (value.isascii() and value.isprintable() and " " not in value):
        bad = next(c for c in value if c not in _ALLOWED)
        raise InvalidSubmission(
            f"{name}={value[:40]!r} contains {bad!r}; eSMS ids are printable ASCII without spaces"
        )
    return value
