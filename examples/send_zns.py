"""A stand-in for eSMS's send API, shared by the web examples.

A real app POSTs to eSMS's SendZaloMessage API and gets back an SMSID; this returns one the
way eSMS formats them, so the examples run without an eSMS account.
"""

from __future__ import annotations

import uuid


def send_zns_message(phone: str, template_id: str, oa_id: str) -> str:
    """Pretend to send a ZNS message; return its SMSID (the RefId to fetch statuses for)."""
    return f"{uuid.uuid4()}{len(phone)}"
