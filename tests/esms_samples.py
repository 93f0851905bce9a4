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
# GetSmsSentData_V2's sample (esms-api/ham-truy-xuat-va-dang-ky/
# ham-kiem-tra-trang-thai-tin-nhan-theo-khoang-thoi-gian.md) with its two typos mended: a comma
# after CountTotal, and `"SendStatus:5` as `"SendStatus": 5`. Both rows have the same SmsId there.
LEDGER_SAMPLE_TEXT = (
    "Cam on quy khach da su dung dich vu cua chung toi. Chuc quy khach mot ngay tot lanh!"
)
LEDGER_SAMPLE_PHONE = "0901888484"
LEDGER_SAMPLE = """{
    "CodeResult": "100",
    "CountTotal": 2,
    "SentData": [
        {
            "Campaign": "Chiến dịch 02/10/2023",
            "Content": "TEXT",
            "Phone": "0901888484",
            "ReferenceId": "35781d6c25524e40a035c26663189549",
            "SellPrice": 345.0,
            "SendResult": 0,
            "SendStatus": 5,
            "SentTime": "/Date(1705484048995+0700)/",
            "SmsId": 29028845,
            "SmsType": 2
        },
        {
            "Campaign": "Chiến dịch 02/10/2023",
            "Content": "TEXT",
            "Phone": "0901888484",
            "ReferenceId": "0aac72e0-ba9b-4348-8530-d18d105778db18",
            "SellPrice": 790.0000,
            "SendResult": 1,
            "SendStatus": 5,
            "SentTime": "/Date(1705484048995+0700)/",
            "SmsId": 29028845,
            "SmsType": 2
        }
    ]
}""".replace('"TEXT"', f'"{LEDGER_SAMPLE_TEXT}"')
