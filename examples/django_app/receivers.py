"""What the shop does when a message's status changes: here, log a failed one.

Called once per new state, after its MessageStatus row is committed (never for a duplicate
or a late `pending`). A real shop would mark its order, retry by SMS, notify support...
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import receiver

from esms_callbacks.contrib.django.models import MessageStatus
from esms_callbacks.contrib.django.signals import status_changed
from esms_callbacks.events.model import StatusEvent

log = logging.getLogger(__name__)


@receiver(status_changed)
def on_status_changed(
    sender: type[MessageStatus], event: StatusEvent, message: MessageStatus, **kwargs: Any
) -> None:
    if event.status == "failed":
        code = event.error.code if event.error else None
        log.warning("ZNS %s to OA %s failed (Zalo error %s)", event.ref_id, event.oa_id, code)
