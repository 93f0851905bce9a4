"""MessageStatus keeps the furthest state; status_changed once per new state, after commit.
Every test runs on SQLite and on PostgreSQL (`alias`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction

from esms_callbacks.contrib.django.applying import apply_event
from esms_callbacks.contrib.django.models import MessageStatus
from tests.contrib_django.events import T0, event


def states(signals: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(s["event"].ref_id, s["event"].status) for s in signals]


def test_a_late_pending_never_replaces_sent(alias, signals):
    # given a message seen sent
    assert apply_event(event("r1", "sent", at_s=10), using=alias) is not None
    # when its pending event arrives late (another consumer, a redelivery)
    assert apply_event(event("r1", "pending7", at_s=5), using=alias) is None
    # expect the row still sent, and one signal
    row = MessageStatus.objects.using(alias).get(ref_id="r1")
    assert (row.status, row.terminal, row.send_status) == ("sent", True, 5)
    assert states(signals) == [("r1", "sent")]


def test_each_step_forward_is_stored_and_signalled_once(alias, signals):
    for state in ("pending1", "pending7", "pending1", "pending7", "failed", "sent"):
        apply_event(event("r2", state), using=alias)
    row = MessageStatus.objects.using(alias).get(ref_id="r2")
    assert (row.status, row.error) == ("failed", {"code": -124, "message": "x"})
    assert row.event_id == event("r2", "failed").event_id
    assert states(signals) == [("r2", "pending"), ("r2", "pending"), ("r2", "failed")]
    assert [s["event"].send_status for s in signals] == [1, 7, 5]
    assert signals[-1]["message"].pk == row.pk
    assert MessageStatus.objects.using(alias).count() == 1


def test_a_duplicate_event_signals_nothing(alias, signals):
    sent = event("r3", "sent")
    assert apply_event(sent, using=alias) is not None
    assert apply_event(sent, using=alias) is None
    assert len(signals) == 1
    assert signals[0]["event"] == sent


def test_delivered_at_is_stored_from_version_2_events(alias, signals):
    # given delivery tracked: sent is not terminal, delivered is
    apply_event(event("r4", "sent", track_delivery=True), using=alias)
    row = MessageStatus.objects.using(alias).get(ref_id="r4")
    assert (row.status, row.terminal, row.delivered_at) == ("sent", False, None)
    apply_event(event("r4", "delivered", at_s=60, track_delivery=True), using=alias)
    row.refresh_from_db()
    assert (row.status, row.terminal, row.version) == ("delivered", True, 2)
    assert row.delivered_at == T0 + timedelta(seconds=57)
    # and a late sent after delivered changes nothing
    assert apply_event(event("r4", "sent", track_delivery=True), using=alias) is None
    assert states(signals) == [("r4", "sent"), ("r4", "delivered")]


def test_the_signal_waits_for_the_commit(alias, signals):
    with transaction.atomic(using=alias):
        apply_event(event("r5", "sent"), using=alias)
        assert signals == []  # not yet committed
    assert states(signals) == [("r5", "sent")]


def test_no_signal_and_no_row_when_the_transaction_rolls_back(alias, signals):
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        apply_event(event("r6", "sent"), using=alias)
        raise RuntimeError("the app's own write failed")
    assert signals == []
    assert not MessageStatus.objects.using(alias).filter(ref_id="r6").exists()
    # the event applied again (redelivered) is then new
    assert apply_event(event("r6", "sent"), using=alias) is not None
    assert states(signals) == [("r6", "sent")]


def test_accounts_keep_their_own_rows(alias, signals):
    ours = event("r7", "sent")
    theirs = type(ours).from_payload(
        {**_payload_of(ours), "account": "shop2", "event_id": "other-id"}
    )
    apply_event(ours, using=alias)
    apply_event(theirs, using=alias)
    rows = MessageStatus.objects.using(alias).filter(ref_id="r7").order_by("account")
    assert [r.account for r in rows] == ["default", "shop2"]


def _payload_of(ev: Any) -> dict[str, Any]:
    from tests.contrib_django.events import payload

    return payload(ev.ref_id, "sent")
