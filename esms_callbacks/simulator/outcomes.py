"""Per-RefId scripted outcomes and the eSMS records they turn into.

An outcome names what GetCallback says about one RefId on one ask:

    pending1 / pending2 / pending7   SendStatus 1, 2 or 7 (not terminal yet)
    sent                             SendStatus 5, SendSuccess 1, SendFailed 0
    failed                           SendStatus 5, SendFailed 1, ErrorInfo with a Zalo error
    failed_offline                   SendStatus 5, SendFailed 1, ErrorInfo "1001": the user was
                                     not online in time (QueryZnsStatus's documented code; eSMS
                                     does not say what GetCallback gives, "1001" is our choice)
    rejected                         SendStatus 4, ErrorInfo ending in `____dd/MM/yyyy HH:mm:ss`
    missing                          no record at all (eSMS does not know the RefId yet)

Each RefId follows a script (a list of outcomes): every ask uses the next one, the last one sticks.
RefIds without a script get one from the policy: "sent" (always sent), "mixed" (chosen from a
hash of the RefId, so a run is reproducible) or "missing" (unknown to eSMS). Every varying field
is derived from the RefId too, Zalo's message id (`Partnerids`, `ZaloMsgId`) included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal, TypeGuard, get_args

Outcome = Literal[
    "pending1", "pending2", "pending7", "sent", "failed", "failed_offline", "rejected", "missing"
]
Policy = Literal["sent", "mixed", "missing"]

OUTCOMES: frozenset[str] = frozenset(get_args(Outcome))
POLICIES: frozenset[str] = frozenset(get_args(Policy))

# (upper bound of the hash bucket out of 100, script): ~70% sent, ~10% pending then sent,
# ~8% failed, ~4% rejected, ~8% unknown at first ask then sent.
_MIXED_SCRIPTS: tuple[tuple[int, tuple[Outcome, ...]], ...] = (
    (70, ("sent",)),
    (80, ("pending7", "sent")),
    (88, ("failed",)),
    (92, ("rejected",)),
    (100, ("missing", "sent")),
)

# eSMS's own sample comes first and most often: a Zalo error object followed by leftover text.
_FAILED_ERRORS = (
    '{"error":-124,"message":"Access token is invalid"}'
    "Object reference not set to an instance of an object.",
    '{"error":-124,"message":"Access token is invalid"}'
    "Object reference not set to an instance of an object.",
    '{"error":-118,"message":"Zalo account not existed or is disabled"}',
    '{"error":-119,"message":"Account can not receive ZNS message"}',
)
_REJECTED_ERRORS = (
    '{"error":-108,"message":"Phone number is invalid"}',
    '{"error":-118,"message":"Zalo account not existed or is disabled"}',
    '{"error":-131,"message":"Template is not approved or has been disabled"}',
)
# Mobile prefixes per Telcoid, so PhoneNumber and Telcoid agree as they would at eSMS.
_PREFIXES_BY_TELCO: dict[int, tuple[str, ...]] = {
    1: ("086", "096", "097", "098", "032", "033", "034", "035", "036", "037", "038", "039"),
    2: ("089", "090", "093", "070", "076", "077", "078", "079"),
    3: ("088", "091", "094", "081", "082", "083", "084", "085"),
    4: ("092", "056", "058"),
    5: ("099", "059"),
    6: ("087",),
    7: ("055",),
}
# Most subscribers are on the big three networks.
_TELCO_WEIGHTS = (1,) * 45 + (2,) * 20 + (3,) * 25 + (4,) * 4 + (5,) * 2 + (6,) * 3 + (7,) * 1
_TEMPLATE_IDS = ("228386", "231457", "240118", "251902", "263340")
_PRICE_BY_TYPE = {24: 440.0, 25: 300.0}  # VND per delivered ZNS; plausible, not eSMS's tariff
_CALLBACK_URL = "https://api.esms.vn/zalo-zns/zns/receive-callback"
_ERROR_STAMP_BASE = datetime(2024, 4, 1, 8, 0, 0)
OFFLINE_ERROR = "1001"  # QueryZnsStatus: failed, the user was not online in time
# Outcomes of a message that reached Zalo, so that it has Zalo's message id.
_REACHED_ZALO: frozenset[Outcome] = frozenset({"pending7", "sent", "failed", "failed_offline"})
# Outcomes after which nothing changes any more.
FINAL_OUTCOMES: frozenset[Outcome] = frozenset({"sent", "failed", "failed_offline", "rejected"})


def is_outcome(value: object) -> TypeGuard[Outcome]:
    return isinstance(value, str) and value in OUTCOMES


def is_policy(value: object) -> TypeGuard[Policy]:
    return isinstance(value, str) and value in POLICIES


def parse_outcomes(values: object) -> tuple[Outcome, ...]:
    """Check a script given by a caller; raise ValueError naming the bad entry."""
    if not isinstance(values, Sequence) or isinstance(values, str) or not values:
        raise ValueError("outcomes must be a non-empty list of outcome names")
    script: list[Outcome] = []
    for value in values:
        if not is_outcome(value):
            raise ValueError(f"unknown outcome {value!r}; use one of {sorted(OUTCOMES)}")
        script.append(value)
    return tuple(script)


def parse_policy(value: object) -> Policy:
    if not is_policy(value):
        raise ValueError(f"unknown policy {value!r}; use one of {sorted(POLICIES)}")
    return value


def default_script(ref_id: str, policy: Policy) -> tuple[Outcome, ...]:
    if policy == "sent":
        return ("sent",)
    if policy == "missing":
        return ("missing",)
    bucket = _digest(ref_id, "script") % 100
    return next(script for bound, script in _MIXED_SCRIPTS if bucket < bound)


class ScriptBook:
    """Scripts, positions and ask counts per RefId. Not thread-safe: the caller locks."""

    def __init__(self, policy: Policy = "mixed") -> None:
        self.policy: Policy = policy
        self._scripts: dict[str, tuple[Outcome, ...]] = {}
        self._positions: dict[str, int] = {}
        self._asked: dict[str, int] = {}

    def script(self, ref_id: str, outcomes: Sequence[str]) -> None:
        """Give `ref_id` a script; its next ask uses the first outcome."""
        self._scripts[ref_id] = parse_outcomes(outcomes)
        self._positions[ref_id] = 0

    def script_of(self, ref_id: str) -> tuple[Outcome, ...]:
        """Return the script `ref_id` follows (its own or the policy's), asking nothing."""
        return self._scripts.get(ref_id) or default_script(ref_id, self.policy)

    def current_outcome(self, ref_id: str) -> Outcome:
        """Return the outcome GetCallback gave `ref_id` last (its first before any ask),
        asking nothing."""
        script = self.script_of(ref_id)
        position = max(self._positions.get(ref_id, 0) - 1, 0)
        return script[min(position, len(script) - 1)]

    def count_ask(self, ref_id: str) -> None:
        """Count one ask of `ref_id` answered from elsewhere (a registered message)."""
        self._asked[ref_id] = self._asked.get(ref_id, 0) + 1

    def forget(self, ref_id: str) -> None:
        """Drop the script of `ref_id` (its ask count stays)."""
        self._scripts.pop(ref_id, None)
        self._positions.pop(ref_id, None)

    def next_outcome(self, ref_id: str) -> Outcome:
        """Count one ask of `ref_id` and return the outcome it gets."""
        script = self.script_of(ref_id)
        position = self._positions.get(ref_id, 0)
        self._positions[ref_id] = position + 1
        self._asked[ref_id] = self._asked.get(ref_id, 0) + 1
        return script[min(position, len(script) - 1)]

    def asked(self, ref_id: str) -> int:
        return self._asked.get(ref_id, 0)

    def clear(self) -> None:
        self._scripts.clear()
        self._positions.clear()
        self._asked.clear()


def type_id_of(ref_id: str) -> int:
    """The ZNS type (24 priority, 25 normal) of a RefId no message registration names."""
    return 24 if _digest(ref_id, "type") % 3 == 0 else 25


def zalo_message_id(ref_id: str) -> str:
    """Zalo's id of the message sent as `ref_id`: 20 hex digits, as in eSMS's samples."""
    return _hex(ref_id, "partner", 20)


def reached_zalo(outcome: Outcome) -> bool:
    """Whether a message at `outcome` reached Zalo, so that it has Zalo's message id."""
    return outcome in _REACHED_ZALO


def price_of(type_id: int, outcome: Outcome) -> float:
    """What the message cost: charged only when sent."""
    return _PRICE_BY_TYPE.get(type_id, _PRICE_BY_TYPE[25]) if outcome == "sent" else 0.0


def zalo_error_code(ref_id: str, outcome: Outcome) -> str | None:
    """The Zalo error code of a failed or rejected message as text ("-118"), "1001" for
    failed_offline, None otherwise: the same error its GetCallback record carries."""
    if outcome == "failed_offline":
        return OFFLINE_ERROR
    if outcome == "failed":
        return _code_of(_FAILED_ERRORS[_digest(ref_id, "failed") % len(_FAILED_ERRORS)])
    if outcome == "rejected":
        return _code_of(_REJECTED_ERRORS[_digest(ref_id, "rejected") % len(_REJECTED_ERRORS)])
    return None


def _code_of(error: str) -> str:
    # Each error above starts {"error":<code>,...
    return error.split(":", 1)[1].split(",", 1)[0]


def build_record(
    ref_id: str, oa_id: str, outcome: Outcome, type_id: int | None = None
) -> dict[str, object] | None:
    """Return the Data_callback record for one ask, shaped like eSMS's sample; None if missing.
    `type_id` is the message's ZNS type when registered, else derived from the RefId."""
    if outcome == "missing":
        return None
    type_id = type_id_of(ref_id) if type_id is None else type_id
    telco_id = _telco_of(ref_id)
    return {
        "SMSID": ref_id,
        "SendFailed": 1 if outcome in ("failed", "failed_offline", "rejected") else 0,
        "SendSuccess": 1 if outcome == "sent" else 0,
        "SendStatus": _SEND_STATUS[outcome],
        "TotalPrice": price_of(type_id, outcome),
        "TotalReceiver": 1,
        "TotalSent": 1 if reached_zalo(outcome) else 0,
        "RequestId": None,
        "TypeId": type_id,
        "Telcoid": telco_id,
        "PhoneNumber": _phone_number(ref_id, telco_id),
        "CallbackUrl": _CALLBACK_URL,
        "Partnerids": zalo_message_id(ref_id) if reached_zalo(outcome) else "",
        "ErrorInfo": _error_info(ref_id, outcome),
        "OAId": oa_id,
        "ZnsTempId": _TEMPLATE_IDS[_digest(ref_id, "template") % len(_TEMPLATE_IDS)],
    }


_SEND_STATUS: dict[Outcome, int] = {
    "pending1": 1,
    "pending2": 2,
    "pending7": 7,
    "sent": 5,
    "failed": 5,
    "failed_offline": 5,
    "rejected": 4,
}


def _error_info(ref_id: str, outcome: Outcome) -> str | None:
    if outcome == "failed":
        return _FAILED_ERRORS[_digest(ref_id, "failed") % len(_FAILED_ERRORS)]
    if outcome == "failed_offline":
        return OFFLINE_ERROR
    if outcome == "rejected":
        error = _REJECTED_ERRORS[_digest(ref_id, "rejected") % len(_REJECTED_ERRORS)]
        offset_s = _digest(ref_id, "stamp") % (60 * 86400)
        stamp = _ERROR_STAMP_BASE + timedelta(seconds=offset_s)
        return f"{error}____{stamp:%d/%m/%Y %H:%M:%S}"
    # eSMS gives both null and "" for "no error"; clients must accept either.
    return "" if outcome == "sent" and _digest(ref_id, "empty") % 2 else None


def phone_number_of(ref_id: str) -> str:
    """The made-up phone number `ref_id` was sent to: the same in every answer."""
    return _phone_number(ref_id, _telco_of(ref_id))


def _telco_of(ref_id: str) -> int:
    return _TELCO_WEIGHTS[_digest(ref_id, "telco") % len(_TELCO_WEIGHTS)]


def _phone_number(ref_id: str, telco_id: int) -> str:
    prefixes = _PREFIXES_BY_TELCO[telco_id]
    prefix = prefixes[_digest(ref_id, "prefix") % len(prefixes)]
    return f"{prefix}{_digest(ref_id, 'phone') % 10_000_000:07d}"


def _digest(ref_id: str, purpose: str) -> int:
    data = f"{purpose}:{ref_id}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _hex(ref_id: str, purpose: str, length: int) -> str:
    return hashlib.blake2b(f"{purpose}:{ref_id}".encode(), digest_size=length // 2).hexdigest()
