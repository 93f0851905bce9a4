"""eSMS's sample answers for QueryZnsStatus and GetZaloMessageStatus, as their pages show them:
devesms/gitbook_esms_for_develop_v2, esms-api/ham-truy-xuat-va-dang-ky/
ham-lay-thong-tin-trang-thai-zns-1.md and ham-lay-thong-tin-trang-thai-zns.md."""

from __future__ import annotations

QUERY_SAMPLE = """{
    "CodeResult": "100",
    "Data": {
        "ErrorInfo": "0",
        "FinalStatus": "1",
        "SMSID": "59e0c764219c49119063db4468f257fb221",
        "SendFailed": 0,
        "SendStatus": 5,
        "SendSuccess": 1,
        "TotalPrice": 330.0,
        "TotalReceiver": 1,
        "TotalSent": 1,
        "ZaloMsgId": "6dc7499c9ef6baaee3e1"
    }
}"""
QUERY_SAMPLE_SMSID = "59e0c764219c49119063db4468f257fb221"
DELIVERY_SAMPLE = """{
    "CodeResult": "100",
    "Data": {
        "delivery_time": "1767678030984",
        "message": "The message was delivered to the user's phone",
        "status": 1
    },
    "ErrorMessage": "success. "
}"""
