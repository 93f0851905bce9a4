"""GetSmsSentData_V2 as eSMS documents it, and the ledger the simulator keeps of what it was told
was sent: every registered message (simulator.messages) is a row, created when registered.

eSMS's page (github.com/devesms/gitbook_esms_for_develop_v2, esms-api/ham-truy-xuat-va-dang-ky/
ham-kiem-tra-trang-thai-tin-nhan-theo-khoang-thoi-gian.md; codes in esms-api/bang-ma-loi.md):

    POST /MainService.svc/json/GetSmsSentData_V2    (no rate documented)
    {"ApiKey", "SecretKey", "SmsType": "25", "From": "2025-01-01 06:00:00",
     "To": "2025-01-02 18:00:00", "Page": 1, "PageSize": 500}
    -> {"CodeResult": "100", "CountTotal": 2, "SentData": [{"Campaign", "Content", "Phone",
        "ReferenceId": "<the send's SMSID>", "SellPrice", "SendResult", "SendStatus",
        "SentTime": "/Date(1705484048995+0700)/", "SmsId": 29028845, "SmsType": 2}, ...]}

From and To are Vietnam time by creation; Page counts from 1; PageSize is at most 500.

Where eSMS's docs are silent the simulator chooses, and clients must accept either way: the
range is From <= creation <= To, both inclusive, compared to the millisecond (a message created
at To plus half a second is in the next range: sweeps should overlap by a second); rows are
ordered by creation, then SmsId (eSMS's portal id: a number, counting up); a range without a
row is 105 (the code table lists 105, "not found", for this function), a page past the end of a
range with rows is 100 with an empty SentData; "99" for a body that is not an object or
SmsType, From, To, Page or PageSize missing or bad (PageSize over 500 included), "101" wrong
keys, "160" sooner than the account's ledger interval (1 s by default: eSMS documents none).
SendStatus and SendResult follow the message's outcome when asked (_SEND_STATE); SentTime is
its creation. Phone and Content are made up, but there, as eSMS's are.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from esms_callbacks.simulator.messages import Message
from esms_callbacks.simulator.outcomes import Outcome, phone_number_of, price_of
from esms_callbacks.simulator.zns_status import Refused, refusal

LEDGER_PATH = "/MainService.svc/json/GetSmsSentData_V2"
MAX_PAGE_SIZE = 500
ESMS_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
ESMS_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FIRST_SMS_ID = 29_000_001  # portal ids of eSMS's sample's size
NOTHING_FOUND_CODE = 105
CAMPAIGN = "Chien dich mo phong"

# (SendStatus, SendResult) of a row whose message is at that outcome: pending is 2,
# "undetermined"; a message that ends rejected waits for approval (1) until then.
_SEND_STATE: dict[Outcome, tuple[int, int]] = {
    "pending1": (1, 2),
    "pending2": (2, 2),
    "pending7": (7, 2),
    "sent": (5, 1),
    "failed": (5, 0),
    "failed_offline": (5, 0),
    "rejected": (4, 0),
}


@dataclass(frozen=True)
class LedgerAsk:
    sms_type: int
    from_s: float  # time.time() of From, Vietnam time
    to_s: float
    page: int  # from 1
    page_size: int


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger: a registered message and its portal id."""

    created_at_s: float  # the simulator's clock at registration
    sms_id: int
    message: Message


class SentLedger:
    """The rows, per SmsType, each list kept ordered by (creation, SmsId): a page is two
    bisects and a slice, whatever the size. Not thread-safe: the Simulator's lock guards it."""

    def __init__(self) -> None:
        self._by_type: dict[int, list[LedgerEntry]] = {}
        self._by_ref_id: dict[str, LedgerEntry] = {}
        self._next_sms_id = FIRST_SMS_ID  # never reused, resets included: ids stay unique

    def __len__(self) -> int:
        return len(self._by_ref_id)

    def add(self, message: Message) -> None:
        """A row for `message`, created now; it replaces the RefId's row if it had one."""
        self.remove(message.ref_id)
        entry = LedgerEntry(message.sent_at_s, self._next_sms_id, message)
        self._next_sms_id += 1
        # Registered in clock order, a row goes last: insort finds that in log n steps.
        insort(self._by_type.setdefault(message.type_id, []), entry, key=_order)
        self._by_ref_id[message.ref_id] = entry

    def remove(self, ref_id: str) -> None:
        entry = self._by_ref_id.pop(ref_id, None)
        if entry is None:
            return
        rows = self._by_type[entry.message.type_id]
        del rows[bisect_left(rows, _order(entry), key=_order)]

    def clear(self) -> None:
        self._by_type.clear()
        self._by_ref_id.clear()

    def page(self, ask: LedgerAsk) -> tuple[int, list[LedgerEntry]]:
        """How many rows are in the asked type and range, and the asked page of them."""
        rows = self._by_type.get(ask.sms_type, [])
        first = bisect_left(rows, ask.from_s, key=_created)
        end = bisect_right(rows, ask.to_s, key=_created)
        start = min(first + (ask.page - 1) * ask.page_size, end)
        return max(end - first, 0), rows[start : min(start + ask.page_size, end)]


def read_ledger(body: dict[str, object]) -> LedgerAsk:
    """The type, range and page asked; raise Refused (99) when one is missing or bad."""
    sms_type = _number(body.get("SmsType"), "SmsType")
    page = _number(body.get("Page"), "Page")
    page_size = _number(body.get("PageSize"), "PageSize")
    if page < 1:
        raise Refused(99, "Page counts from 1")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise Refused(99, f"PageSize must be from 1 to {MAX_PAGE_SIZE}")
    return LedgerAsk(
        sms_type, _moment(body.get("From"), "From"), _moment(body.get("To"), "To"), page, page_size
    )


def ledger_answer(count_total: int, entries: list[LedgerEntry], now_s: float) -> dict[str, object]:
    """GetSmsSentData_V2's answer: the rows as eSMS shapes them, at their outcomes now."""
    if count_total == 0:
        return refusal(NOTHING_FOUND_CODE, "Không tìm thấy dữ liệu")
    return {
        "CodeResult": "100",
        "CountTotal": count_total,
        "SentData": [_row(entry, now_s) for entry in entries],
    }


def message_text_of(ref_id: str) -> str:
    """The made-up text of the message `ref_id` names (never contains the RefId)."""
    code = zlib.crc32(ref_id.encode()) % 1_000_000
    return f"Cam on quy khach! Ma xac nhan cua ban la {code:06d}."


def _row(entry: LedgerEntry, now_s: float) -> dict[str, object]:
    message = entry.message
    outcome = message.outcome_at(now_s)
    send_status, send_result = _SEND_STATE[outcome]
    return {  # eSMS's sample's order
        "Campaign": CAMPAIGN,
        "Content": message_text_of(message.ref_id),
        "Phone": phone_number_of(message.ref_id),
        "ReferenceId": message.ref_id,
        "SellPrice": price_of(message.type_id, outcome),
        "SendResult": send_result,
        "SendStatus": send_status,
        "SentTime": f"/Date({round(entry.created_at_s * 1000)}+0700)/",
        "SmsId": entry.sms_id,
        "SmsType": message.type_id,
    }


def _order(entry: LedgerEntry) -> tuple[float, int]:
    return entry.created_at_s, entry.sms_id


def _created(entry: LedgerEntry) -> float:
    return entry.created_at_s


def _number(value: object, name: str) -> int:
    """A whole number, given as one or as a string of digits (eSMS's table types them as
    strings, its sample sends numbers)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise Refused(99, f"{name} must be a whole number")


def _moment(value: object, name: str) -> float:
    if not isinstance(value, str):
        raise Refused(99, f"{name} must be a date, yyyy-MM-dd HH:mm:ss")
    try:
        local = datetime.strptime(value.strip(), ESMS_TIME_FORMAT)
    except ValueError:
        raise Refused(99, f"{name} must be a date, yyyy-MM-dd HH:mm:ss") from None
    return local.replace(tzinfo=ESMS_ZONE).timestamp()
