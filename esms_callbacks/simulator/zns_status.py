"""QueryZnsStatus and GetZaloMessageStatus as eSMS documents them: reading a request, shaping
an answer. Which status a message has is simulator.message_book's business.

eSMS's pages (github.com/devesms/gitbook_esms_for_develop_v2, esms-api/ham-truy-xuat-va-dang-ky/
ham-lay-thong-tin-trang-thai-zns-1.md "Hàm kiểm tra trạng thái tin nhắn Zalo" and
ham-lay-thong-tin-trang-thai-zns.md "Hàm lấy thông tin trạng thái ZNS"; codes in
esms-api/bang-ma-loi.md):

    POST /MainService.svc/json/QueryZnsStatus/    (100 requests/s)
    {"ApiKey", "SecretKey", "SmsId": "<SMSID>", "SmsType": "24" | "25"}
    -> {"CodeResult": "100", "Data": {"ErrorInfo": "0", "FinalStatus": "1", "SMSID": "...",
        "SendFailed": 0, "SendStatus": 5, "SendSuccess": 1, "TotalPrice": 330.0,
        "TotalReceiver": 1, "TotalSent": 1, "ZaloMsgId": "6dc7499c9ef6baaee3e1"}}

    POST /MainService.svc/json/GetZaloMessageStatus    (30 requests/s)
    {"ApiKey", "SecretKey", "OAID": "...", "MessageId": "<Partnerids / ZaloMsgId>"}
    -> {"CodeResult": "100", "Data": {"delivery_time": "1767678030984",
        "message": "The message was delivered to the user's phone", "status": 1},
        "ErrorMessage": "success. "}

Other answers are {"CodeResult": "<code>", "ErrorMessage": "..."}: 99 body not a JSON object,
SmsType not 24 or 25, OAID missing, or a field of the wrong JSON type (the simulator's choice:
eSMS documents no code for these); 101 wrong keys; 160 too soon ("Vượt giới hạn TPS"); 851
SmsId or MessageId missing ("Thiếu MessageId hoặc SMSID"); 854 no data (QueryZnsStatus only:
"Không tìm thấy dữ liệu").

Where eSMS's docs are silent the simulator chooses, and clients must accept either way:
QueryZnsStatus gives ZaloMsgId "" before the message reached Zalo; a message at Zalo without a
final status is SendStatus 5 with FinalStatus "0" (the docs list SendStatus 1, 2, 5; a rejected
message is 4, as in eSMS's other reports); GetZaloMessageStatus gives delivery_time null unless
status is 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from esms_callbacks.simulator.outcomes import (
    FINAL_OUTCOMES,
    Outcome,
    price_of,
    reached_zalo,
    zalo_error_code,
    zalo_message_id,
)

QUERY_PATH = "/MainService.svc/json/QueryZnsStatus/"
DELIVERY_PATH = "/MainService.svc/json/GetZaloMessageStatus"

# GetZaloMessageStatus's `status`: eSMS's wording (the English page) for each.
NOT_FOUND, AT_ZALO, DELIVERED = -1, 0, 1
_DELIVERY_MESSAGES = {
    NOT_FOUND: "The message does not exist",
    AT_ZALO: "The message is pushed successfully to Zalo server but has not yet delivered "
    "to user's phone",
    DELIVERED: "The message was delivered to the user's phone",
}
# QueryZnsStatus's SendStatus: 1 awaiting approval, 2 awaiting sending, 5 sending done.
_QUERY_SEND_STATUS: dict[Outcome, int] = {
    "pending1": 1,
    "pending2": 2,
    "pending7": 5,  # at Zalo: sending is done, the final status is not (FinalStatus "0")
    "sent": 5,
    "failed": 5,
    "failed_offline": 5,
    "rejected": 4,
}
ZNS_TYPES = (24, 25)  # 24 priority, 25 normal: the only types QueryZnsStatus answers for


class Refused(Exception):
    """A request eSMS answers with an error code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class QueryAsk:
    sms_id: str
    sms_type: int


@dataclass(frozen=True)
class DeliveryAsk:
    oa_id: str
    message_id: str


def refusal(code: int, message: str) -> dict[str, object]:
    return {"CodeResult": str(code), "ErrorMessage": message}


def read_query(body: dict[str, object]) -> QueryAsk:
    """The SmsId and SmsType asked; raise Refused (851, 99) when they are missing or bad."""
    sms_id = body.get("SmsId")
    if sms_id is None or sms_id == "":
        raise Refused(851, "Missing MessageId or SMSID")
    if not isinstance(sms_id, str):
        raise Refused(99, "SmsId must be a string")
    sms_type = body.get("SmsType")
    # eSMS's sample sends "25"; a number is taken too.
    if isinstance(sms_type, str) and sms_type.strip().isdigit():
        sms_type = int(sms_type)
    if isinstance(sms_type, bool) or not isinstance(sms_type, int) or sms_type not in ZNS_TYPES:
        raise Refused(99, "SmsType must be 24 (priority ZNS) or 25 (normal ZNS)")
    return QueryAsk(sms_id, sms_type)


def read_delivery(body: dict[str, object]) -> DeliveryAsk:
    """The OAID and MessageId asked; raise Refused (851, 99) when they are missing or bad."""
    message_id = body.get("MessageId")
    if message_id is None or message_id == "":
        raise Refused(851, "Missing MessageId or SMSID")
    if not isinstance(message_id, str):
        raise Refused(99, "MessageId must be a string")
    oa_id = body.get("OAID")
    if not isinstance(oa_id, str) or not oa_id:
        raise Refused(99, "OAID is required")
    return DeliveryAsk(oa_id, message_id)


def query_answer(ref_id: str, outcome: Outcome, type_id: int) -> dict[str, object]:
    """QueryZnsStatus's answer about a message eSMS knows, at `outcome` ("missing": 854)."""
    if outcome == "missing":
        return refusal(854, "No data found")
    sent = outcome == "sent"
    final = outcome in FINAL_OUTCOMES
    at_zalo = reached_zalo(outcome)
    data: dict[str, object] = {
        # "0" sent, "1001" user not online in time, Zalo's code when failed, null not yet
        "ErrorInfo": "0" if sent else zalo_error_code(ref_id, outcome),
        "FinalStatus": "1" if final else "0",
        "SMSID": ref_id,
        "SendFailed": 1 if final and not sent else 0,
        "SendStatus": _QUERY_SEND_STATUS[outcome],
        "SendSuccess": 1 if sent else 0,
        "TotalPrice": price_of(type_id, outcome),
        "TotalReceiver": 1,
        "TotalSent": 1 if at_zalo else 0,
        "ZaloMsgId": zalo_message_id(ref_id) if at_zalo else "",
    }
    return {"CodeResult": "100", "Data": data}


def delivery_answer(status: int, delivered_at_s: float | None = None) -> dict[str, object]:
    """GetZaloMessageStatus's answer: `status` -1, 0 or 1, delivered at `delivered_at_s`
    (time.time()) when 1."""
    delivery_time = None
    if status == DELIVERED and delivered_at_s is not None:
        delivery_time = str(int(delivered_at_s * 1000))  # a string of ms, as eSMS gives it
    data = {
        "delivery_time": delivery_time,
        "message": _DELIVERY_MESSAGES[status],
        "status": status,
    }
    return {"CodeResult": "100", "Data": data, "ErrorMessage": "success. "}
