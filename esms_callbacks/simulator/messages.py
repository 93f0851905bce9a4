"""Messages registered as sent at a moment, whose status then moves with time (`/_sim/messages`).

A registered message is pending (outcome pending7: at Zalo, no final status yet; pending1,
awaiting approval, when it ends rejected, since a rejected message never reaches Zalo) until
`final_after_s` after it was sent, then `final` for good: "sent", "failed" (a Zalo error),
"failed_offline" (the user was not online in time: ErrorInfo "1001") or "rejected". A message
sent successfully reaches the user's phone `delivered_after_s` after its final status (None:
never), which only GetZaloMessageStatus tells.

eSMS's GetCallback knows only messages sent with a CallbackUrl ("Những SMSID khi request không
truyền CallbackUrl, dùng hàm này sẽ không có thông tin"): a message registered with
`callback_url` false is left out of its answers, while QueryZnsStatus and GetZaloMessageStatus
answer it, and GetSmsSentData_V2's ledger lists every registered message (simulator.ledger).
Registered messages take the place of scripts and of the policy for their RefIds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeGuard, get_args

from esms_callbacks.simulator.outcomes import Outcome, zalo_message_id
from esms_callbacks.simulator.zns_status import ZNS_TYPES

Final = Literal["sent", "failed", "failed_offline", "rejected"]
FINALS: frozenset[str] = frozenset(get_args(Final))

_KEYS = frozenset(
    {
        "ref_ids",
        "oa_id",
        "callback_url",
        "type_id",
        "final_after_s",
        "final",
        "delivered_after_s",
        "ref_id_prefix",
        "count",
    }
)
MAX_COUNT = 1_000_000  # messages one "count" registers: enough for any benchmark


@dataclass(frozen=True)
class Message:
    """One ZNS message as eSMS and Zalo see it over time."""

    ref_id: str
    oa_id: str
    sent_at_s: float  # the simulator's clock (time.time() unless injected) at registration
    callback_url: bool = True  # sent with a CallbackUrl: GetCallback knows it
    type_id: int = 25
    final_after_s: float = 0.0
    final: Final = "sent"
    delivered_after_s: float | None = None  # after the final status; None: never on the phone

    @property
    def zalo_msg_id(self) -> str:
        return zalo_message_id(self.ref_id)

    def outcome_at(self, now_s: float) -> Outcome:
        """What eSMS knows of the message at `now_s`."""
        if now_s >= self.sent_at_s + self.final_after_s:
            return self.final
        return self._pending

    def delivered_at_s(self) -> float | None:
        """When the message reaches the user's phone; None if it never does."""
        if self.final != "sent" or self.delivered_after_s is None:
            return None
        return self.sent_at_s + self.final_after_s + self.delivered_after_s

    def script(self) -> tuple[Outcome, ...]:
        """The statuses it goes through, as a script (for pushes); ("missing",) when sent
        without a CallbackUrl, since eSMS then pushes nothing."""
        if not self.callback_url:
            return ("missing",)
        return (self.final,) if self.final_after_s <= 0 else (self._pending, self.final)

    @property
    def _pending(self) -> Outcome:
        return "pending1" if self.final == "rejected" else "pending7"


def is_final(value: object) -> TypeGuard[Final]:
    return isinstance(value, str) and value in FINALS


def parse_messages(body: Mapping[str, object], sent_at_s: float) -> list[Message]:
    """The messages a `/_sim/messages` body registers, sent at `sent_at_s`; raise ValueError
    naming the bad key."""
    unknown = set(body) - _KEYS
    if unknown:
        raise ValueError(f"unknown message key(s) {sorted(unknown)}; use {sorted(_KEYS)}")
    ref_ids, oa_id = _ref_ids(body), body.get("oa_id")
    if not isinstance(oa_id, str) or not oa_id:
        raise ValueError('give "oa_id", the Zalo OA id as a non-empty string')
    callback_url = body.get("callback_url", True)
    if not isinstance(callback_url, bool):
        raise ValueError('"callback_url" must be true or false')
    type_id = body.get("type_id", 25)
    if not isinstance(type_id, int) or isinstance(type_id, bool) or type_id not in ZNS_TYPES:
        raise ValueError(f'"type_id" must be one of {list(ZNS_TYPES)}, not {type_id!r}')
    final = body.get("final", "sent")
    if not is_final(final):
        raise ValueError(f'"final" must be one of {sorted(FINALS)}, not {final!r}')
    final_after_s = _seconds(body.get("final_after_s", 0), "final_after_s")
    delivered = body.get("delivered_after_s")
    delivered_after_s = None if delivered is None else _seconds(delivered, "delivered_after_s")
    return [
        Message(
            ref_id=ref_id,
            oa_id=oa_id,
            sent_at_s=sent_at_s,
            callback_url=callback_url,
            type_id=type_id,
            final_after_s=final_after_s,
            final=final,
            delivered_after_s=delivered_after_s,
        )
        for ref_id in ref_ids
    ]


def _ref_ids(body: Mapping[str, object]) -> list[str]:
    """The RefIds: "ref_ids" as given, or "count" of them named "ref_id_prefix" and a number
    from 0 (a benchmark's 100,000 in one small body)."""
    if "count" in body or "ref_id_prefix" in body:
        count, prefix = body.get("count"), body.get("ref_id_prefix", "")
        if "ref_ids" in body:
            raise ValueError('give "ref_ids", or "count" and "ref_id_prefix", not both')
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise ValueError(f'"count" must be an integer from 1 to {MAX_COUNT}')
        if not isinstance(prefix, str):
            raise ValueError('"ref_id_prefix" must be a string')
        return [f"{prefix}{number}" for number in range(count)]
    ref_ids = body.get("ref_ids")
    if not isinstance(ref_ids, list) or not ref_ids:
        raise ValueError('give "ref_ids", a non-empty list of RefId strings')
    if not all(isinstance(ref_id, str) and ref_id for ref_id in ref_ids):
        raise ValueError('"ref_ids" must hold only non-empty strings')
    return ref_ids


def _seconds(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f'"{name}" must be a number of seconds >= 0, not {value!r}')
    return float(value)
