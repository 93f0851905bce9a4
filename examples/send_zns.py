"""A stand-in for eSMS's send API, shared by the web examples.

A real app POSTs to eSMS's SendZaloMessage API and gets back an SMSID; this returns one the
way eSMS formats them, so the examples run without an eSMS account.
"""

from __future__ import annotations

import uuid


def send_zns_message(phone: str, template_id: str, oa_id: str) -> str:
    """Pretend to send a ZNS message; return its SMSID (the RefId to fetch statuses for).

    A real send gives eSMS `"CallbackUrl": "https://<your host>/esms/push/<ESMS_PUSH_TOKEN>"`
    in its body: eSMS then pushes the status to the receiver (`esms-callbacks receive`) as soon
    as it has it, and GetCallback knows the message too (it knows none sent without one).
    """
    return f"{uuid.uuid4()}{len(phone)}"
