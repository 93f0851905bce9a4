"""`status_changed`: a message moved to a new, further state, and its row is committed.

    from django.dispatch import receiver
    from esms_callbacks.contrib.django.signals import status_changed

    @receiver(status_changed)
    def on_status(sender, event, message, **kwargs):
        # event: esms_callbacks.events.model.StatusEvent; message: the MessageStatus row
        ...

Sent once per new event_id, by the process that applied it, after the transaction that
stored it committed; never for a duplicate or a step back (a `pending` after a `sent`).
A receiver that raises is logged and does not stop the others, nor undo the row: the event
is not signalled again, so work that must not be lost belongs in the receiver's own
transaction (or an outbox row it writes).
"""

from __future__ import annotations

from django.dispatch import Signal

status_changed = Signal()  # kwargs: event (StatusEvent), message (MessageStatus); sender the model
