"""Apply one status event to MessageStatus: the furthest state wins, in one transaction.

The row of (account, ref_id) is locked (SELECT ... FOR UPDATE, on databases that have it) or
created, compared by rank (esms.records.state_rank) and updated only when the event takes
the message further; `status_changed` goes out when that transaction commits. So two
consumers applying events of one RefId at once keep the furthest, and signal each new
state once.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, router, transaction

from esms_callbacks.contrib.django.models import MessageStatus
from esms_callbacks.contrib.django.signals import status_changed
from esms_callbacks.events.model import StatusEvent

log = logging.getLogger(__name__)


def apply_event(event: StatusEvent, *, using: str | None = None) -> MessageStatus | None:
    """Store `event` if it takes its message further; return the row, or None for a
    duplicate or a step back (nothing written, nothing signalled). `status_changed` is sent
    after the commit: at once here, or when an enclosing atomic block commits (never if it
    rolls back)."""
    alias = using or router.db_for_write(MessageStatus)
    with transaction.atomic(using=alias):
        row = _locked_row(event, alias)
        if row is None:
            row = _created_row(event, alias)
            # None: another consumer inserted it since; now it is there to lock
            moved = row is not None
            row = row or _locked_row(event, alias)
        else:
            moved = False
        if row is None:
            raise RuntimeError(f"the row of RefId {event.ref_id!r} vanished while applying")
        if not moved and not _moved(row, event, alias):
            return None
        stored = row
        transaction.on_commit(lambda: _announce(event, stored), using=alias)
    return row


def _moved(row: MessageStatus, event: StatusEvent, alias: str) -> bool:
    """Move the locked `row` to `event`'s state if that is further; whether it moved."""
    if not row.moved_by(event):
        return False
    row.take(event)
    row.save(using=alias)
    return True


def _locked_row(event: StatusEvent, alias: str) -> MessageStatus | None:
    rows = MessageStatus.objects.using(alias).select_for_update()
    try:
        return rows.get(account=event.account, ref_id=event.ref_id)
    except MessageStatus.DoesNotExist:
        return None


def _created_row(event: StatusEvent, alias: str) -> MessageStatus | None:
    """The row of the message's first event; None if another transaction inserted it first."""
    row = MessageStatus()
    row.take(event)
    try:
        with transaction.atomic(using=alias):  # a savepoint: the outer transaction goes on
            row.save(using=alias, force_insert=True)
    except IntegrityError:
        return None
    return row


def _announce(event: StatusEvent, row: MessageStatus) -> None:
    for receiver, result in status_changed.send_robust(MessageStatus, event=event, message=row):
        if isinstance(result, Exception):
            log.error(
                "status_changed receiver %r failed on event %s of RefId %s",
                receiver,
                event.event_id,
                event.ref_id,
                exc_info=result,
            )
