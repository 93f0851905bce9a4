"""Status events as the project's publisher builds them, for the Django app's tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from esms_callbacks.esms.records import DELIVERED, Outcome, outcome_of
from esms_callbacks.events.model import StatusEvent
from esms_callbacks.events.publish import build_event

OA = "1090257973118325189"
T0 = datetime(2026, 11, 28, 18, 0, tzinfo=UTC)


def payload(
    ref_id: str, state: str, *, at_s: int = 0, track_delivery: bool = False
) -> dict[str, Any]:
    """The event of `ref_id` in `state`: pending1, pending7, sent, failed or delivered."""
    records: dict[str, dict[str, Any]] = {
        "pending1": {"SendStatus": 1},
        "pending7": {"SendStatus": 7},
        "sent": {"SendStatus": 5, "SendFailed": 0},
        "failed": {"SendStatus": 5, "SendFailed": 1, "ErrorInfo": '{"error":-124,"message":"x"}'},
    }
    observed_at = T0 + timedelta(seconds=at_s)
    if state == "delivered":
        outcome = Outcome(DELIVERED, 5, None, None, delivered_at=observed_at - timedelta(seconds=3))
    else:
        outcome = outcome_of({"SMSID": ref_id, **records[state]})
        if track_delivery and state == "sent":  # as esms.records.progressed marks it
            outcome = replace(outcome, awaits_delivery=True)
    return build_event(ref_id, OA, outcome, observed_at, track_delivery=track_delivery)


def event(ref_id: str, state: str, **options: Any) -> StatusEvent:
    return StatusEvent.from_payload(payload(ref_id, state, **options))
