"""MessageStatus: where each message got, as the status events said; one row per RefId."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone

from esms_callbacks.esms.records import STATUSES, state_key_of, state_rank
from esms_callbacks.events.model import StatusEvent

# Lengths: an account is a TOML table name, a RefId at most 128 characters
# (esms.validation.MAX_REF_ID_CHARS), an OA id a number of about 19 digits.
STATUS_CHOICES = [(status, status.replace("_", " ")) for status in STATUSES]


class MessageStatus(models.Model):
    """The furthest state seen of one message (account, ref_id): a late `pending` never
    replaces `sent`. Written by applying.apply_event only."""

    account = models.CharField(max_length=64, default="default")
    oa_id = models.CharField("OA", max_length=64, db_index=True)
    ref_id = models.CharField("RefId", max_length=128)
    status = models.CharField(max_length=16, choices=STATUS_CHOICES)
    terminal = models.BooleanField(help_text="no further state will come")
    send_status = models.IntegerField(null=True, blank=True, help_text="eSMS's SendStatus")
    error = models.JSONField(null=True, blank=True, help_text='{"code", "message"} or null')
    source = models.CharField(max_length=16, help_text="poll, push, query, delivery, reconcile")
    event_id = models.CharField(max_length=64, help_text="of the event that set this state")
    version = models.PositiveSmallIntegerField(help_text="of that event's format")
    observed_at = models.DateTimeField(help_text="when eSMS (or Zalo) told this state")
    submitted_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(
        null=True, blank=True, help_text="when it reached the phone (delivery tracked)"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "esms_message_status"
        verbose_name = "message status"
        verbose_name_plural = "message statuses"
        ordering = ["-observed_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "ref_id"], name="esms_status_one_per_ref")
        ]
        indexes = [
            models.Index(fields=["ref_id"], name="esms_status_ref_id"),
            models.Index(fields=["status", "observed_at"], name="esms_status_status_at"),
            models.Index(fields=["observed_at"], name="esms_status_observed_at"),
        ]

    def __str__(self) -> str:
        return f"{self.ref_id}: {self.status}"

    @property
    def rank(self) -> int:
        """How far along the message is (esms.records.state_rank)."""
        return state_rank(state_key_of(self.status, self.send_status))

    def moved_by(self, event: StatusEvent) -> bool:
        """Whether `event` takes the message further (a new event_id of a higher rank)."""
        return event.event_id != self.event_id and event.rank > self.rank

    def take(self, event: StatusEvent) -> None:
        """Hold `event`'s state (not saved)."""
        self.account = event.account
        self.ref_id = event.ref_id
        self.oa_id = event.oa_id
        self.status = event.status
        self.terminal = event.terminal
        self.send_status = event.send_status
        self.error = (
            {"code": event.error.code, "message": event.error.message} if event.error else None
        )
        self.source = event.source
        self.event_id = event.event_id
        self.version = event.version
        self.observed_at = _stored(event.observed_at)
        self.submitted_at = _stored(event.submitted_at)
        self.delivered_at = _stored(event.delivered_at)


def _stored(moment: datetime | None) -> datetime | None:
    """Events carry aware datetimes; a project with USE_TZ = False stores naive local ones."""
    if moment is None or settings.USE_TZ:
        return moment
    return timezone.make_naive(moment)
