"""What each status source says about a RefId now: GetCallback, QueryZnsStatus and
GetZaloMessageStatus agree, whether the RefId is a registered message (simulator.messages), has
a script, or follows the policy (simulator.outcomes).

- GetCallback: a registered message's status at the clock's now, or nothing when it was sent
  without a CallbackUrl; else the next outcome of the RefId's script (advancing it).
- QueryZnsStatus: the same status, the CallbackUrl not mattering; for a scripted or policy RefId
  the next outcome of its script, as GetCallback's ask would (a script stands for eSMS's state
  moving on, whichever endpoint asks; a RefId asked only here would otherwise never move). A
  SmsType other than the message's type is 854, as a SmsId unknown to eSMS ("missing") is,
  and advances nothing.
- GetZaloMessageStatus: Zalo's message ids are known once handed out (in a GetCallback record or
  a QueryZnsStatus answer), scripted or registered; others are -1, as are messages not at Zalo
  (pending1/2, rejected, missing) and a registered message asked under another OAID. A message
  at Zalo is 0 until it is on the phone, then 1: a registered one `delivered_after_s` after its
  final "sent", a scripted or policy one from the first GetZaloMessageStatus that finds it sent.
- GetSmsSentData_V2 (simulator.ledger): a row per registered message, at its status now;
  scripted and policy RefIds were never "sent" through the simulator and have none (scripting
  a registered RefId removes its row with its message).
"""

from __future__ import annotations

from collections.abc import Sequence

from esms_callbacks.simulator.ledger import LedgerAsk, SentLedger, ledger_answer
from esms_callbacks.simulator.messages import Message
from esms_callbacks.simulator.outcomes import (
    Outcome,
    ScriptBook,
    build_record,
    reached_zalo,
    type_id_of,
    zalo_message_id,
)
from esms_callbacks.simulator.zns_status import AT_ZALO, DELIVERED, NOT_FOUND


class MessageBook:
    """Registered messages, Zalo's ids handed out, and the status each source gives.

    Not thread-safe: the Simulator's lock guards it."""

    def __init__(self, scripts: ScriptBook) -> None:
        self.scripts = scripts
        self._messages: dict[str, Message] = {}
        self._ref_by_zalo_id: dict[str, str] = {}
        self._delivered_at_s: dict[str, float] = {}  # scripted or policy RefIds found delivered
        self._ledger = SentLedger()

    def register(self, messages: Sequence[Message]) -> None:
        """Register messages; each replaces the script of its RefId."""
        for message in messages:
            self.scripts.forget(message.ref_id)
            self._delivered_at_s.pop(message.ref_id, None)
            self._messages[message.ref_id] = message
            self._ref_by_zalo_id[message.zalo_msg_id] = message.ref_id
            self._ledger.add(message)

    def script(self, ref_id: str, outcomes: Sequence[str]) -> None:
        """Give `ref_id` a script (simulator.outcomes); it replaces its registered message."""
        self.scripts.script(ref_id, outcomes)
        self._messages.pop(ref_id, None)
        self._ledger.remove(ref_id)
        self._ref_by_zalo_id[zalo_message_id(ref_id)] = ref_id

    def message(self, ref_id: str) -> Message | None:
        return self._messages.get(ref_id)

    def has_messages(self) -> bool:
        return bool(self._messages)

    def callback_record(self, ref_id: str, oa_id: str, now_s: float) -> dict[str, object] | None:
        """Count one GetCallback ask of `ref_id` and return its record, or None."""
        message = self._messages.get(ref_id)
        if message is None:
            record = build_record(ref_id, oa_id, self.scripts.next_outcome(ref_id))
        else:
            self.scripts.count_ask(ref_id)
            if not message.callback_url:  # eSMS's GetCallback knows only those sent with one
                return None
            record = build_record(ref_id, oa_id, message.outcome_at(now_s), message.type_id)
        if record is not None and record["Partnerids"]:
            self._ref_by_zalo_id[str(record["Partnerids"])] = ref_id
        return record

    def status(self, ref_id: str, now_s: float) -> tuple[Outcome, int]:
        """The outcome and ZNS type of `ref_id` now, advancing nothing."""
        message = self._messages.get(ref_id)
        if message is not None:
            return message.outcome_at(now_s), message.type_id
        return self.scripts.current_outcome(ref_id), type_id_of(ref_id)

    def query_outcome(self, ref_id: str, sms_type: int, now_s: float) -> Outcome:
        """What QueryZnsStatus tells of `ref_id` asked as `sms_type`: "missing" for no data."""
        outcome, type_id = self.status(ref_id, now_s)
        if type_id != sms_type:
            return "missing"
        if ref_id not in self._messages:
            outcome = self.scripts.next_outcome(ref_id)
        if reached_zalo(outcome):
            self._ref_by_zalo_id[zalo_message_id(ref_id)] = ref_id
        return outcome

    def delivery(self, message_id: str, oa_id: str, now_s: float) -> tuple[int, float | None]:
        """GetZaloMessageStatus's status of Zalo's message `message_id` now, and when it was
        delivered (None unless status is 1)."""
        ref_id = self._ref_by_zalo_id.get(message_id)
        if ref_id is None:
            return NOT_FOUND, None
        message = self._messages.get(ref_id)
        if message is not None and message.oa_id != oa_id:
            return NOT_FOUND, None  # Zalo keeps messages per OA
        outcome, _ = self.status(ref_id, now_s)
        if not reached_zalo(outcome):
            return NOT_FOUND, None
        if message is not None:
            delivered_at_s = message.delivered_at_s()
        elif outcome == "sent":
            delivered_at_s = self._delivered_at_s.setdefault(ref_id, now_s)
        else:
            delivered_at_s = None
        if delivered_at_s is None or now_s < delivered_at_s:
            return AT_ZALO, None
        return DELIVERED, delivered_at_s

    def ledger(self, ask: LedgerAsk, now_s: float) -> dict[str, object]:
        """GetSmsSentData_V2's answer to `ask`, each row at its message's status now."""
        count_total, entries = self._ledger.page(ask)
        return ledger_answer(count_total, entries, now_s)

    def script_of(self, ref_id: str) -> tuple[Outcome, ...]:
        """The statuses `ref_id` goes through, for pushes, asking nothing."""
        message = self._messages.get(ref_id)
        return message.script() if message is not None else self.scripts.script_of(ref_id)

    def clear(self) -> None:
        self.scripts.clear()
        self._messages.clear()
        self._ref_by_zalo_id.clear()
        self._delivered_at_s.clear()
        self._ledger.clear()
