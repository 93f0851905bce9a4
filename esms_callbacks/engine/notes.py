"""What the sources learnt of a RefId that its next ask needs, kept beside the backlog.

QueryZnsStatus needs the message's SmsType (24 or 25: the producer's `sms_type=`, or a
GetCallback record's TypeId, or found by asking); a RefId GetCallback does not know is asked
with QueryZnsStatus from then on; GetZaloMessageStatus needs Zalo's message id (a record's
Partnerids, QueryZnsStatus's ZaloMsgId). One short string per RefId in a hash per OA
(AccountKeys.notes), dropped when the RefId is done. A lost note costs an ask, never a
status: each is found again the way it was found first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import redis

from esms_callbacks.engine.keys import AccountKeys
from esms_callbacks.engine.redis_values import as_text

SMS_TYPES = (24, 25)  # Zalo priority, Zalo normal
NO_OA = "-"  # the OA of RefIds adopted from eSMS's ledger, which names none


# What one source said of a RefId last: (its letter, as events.publish.SOURCE_LETTERS has
# it, the state key, when: epoch s).
Heard = tuple[str, str, int]


@dataclass(frozen=True)
class Note:
    sms_type: int | None = None  # 24 or 25, when known
    by_query: bool = False  # GetCallback does not know it (sent without a CallbackUrl)
    message_id: str = ""  # Zalo's id of the message, once it was sent
    # What QueryZnsStatus and GetZaloMessageStatus said last, and when (`show`); GetCallback's
    # word is the RefId's last state and event, kept with it by the backlog.
    heard: tuple[Heard, ...] = ()

    def text(self) -> str:
        said = ",".join(f"{letter}:{state}@{at_s}" for letter, state, at_s in self.heard)
        by_query = "q" if self.by_query else ""
        return f"{self.sms_type or ''}|{by_query}|{said}|{self.message_id}"

    @classmethod
    def parse(cls, text: str) -> Note:
        sms_type, by_query, said, message_id = [*text.split("|", 3), "", "", "", ""][:4]
        number = int(sms_type) if sms_type.isdigit() else None
        heard = []
        for item in filter(None, said.split(",")):
            letter, _, rest = item.partition(":")
            state, _, at_s = rest.rpartition("@")
            if at_s.isdigit():
                heard.append((letter, state, int(at_s)))
        return cls(
            number if number in SMS_TYPES else None, by_query == "q", message_id, tuple(heard)
        )

    def learnt(self, other: Note) -> Note:
        """This note with what `other` adds (its known values win)."""
        said = {letter: (letter, state, at_s) for letter, state, at_s in self.heard}
        said.update({letter: (letter, state, at_s) for letter, state, at_s in other.heard})
        return replace(
            self,
            sms_type=other.sms_type or self.sms_type,
            by_query=self.by_query or other.by_query,
            message_id=other.message_id or self.message_id,
            heard=tuple(sorted(said.values())),
        )


def note_of(record: Mapping[str, object]) -> Note | None:
    """What a GetCallback record (or a push) teaches: its TypeId, Zalo's message id."""
    type_id = record.get("TypeId")
    sms_type = int(type_id) if str(type_id).strip() in ("24", "25") else None  # type: ignore[call-overload]
    message_id = record.get("Partnerids")
    message_id = message_id.strip() if isinstance(message_id, str) else ""
    if sms_type is None and not message_id:
        return None
    return Note(sms_type=sms_type, message_id=message_id[:128])


class Notes:
    def __init__(self, client: redis.Redis, keys: AccountKeys) -> None:
        self._redis = client
        self._keys = keys

    def read(self, oa_id: str, ref_ids: Sequence[str]) -> dict[str, Note]:
        """The notes of `ref_ids` (those without one are left out)."""
        if not ref_ids:
            return {}
        texts = self._redis.hmget(self._keys.notes(oa_id), list(ref_ids))
        return {
            ref_id: Note.parse(as_text(text))
            for ref_id, text in zip(ref_ids, texts, strict=True)
            if text is not None
        }

    def write(self, oa_id: str, notes: Mapping[str, Note]) -> None:
        if notes:
            mapping = {ref_id: note.text() for ref_id, note in notes.items()}
            self._redis.hset(self._keys.notes(oa_id), mapping=mapping)  # type: ignore[arg-type]
