"""From `.delay()` to status events through a real Celery worker, Redis and the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from esms_callbacks.errors import InvalidSubmission
from esms_callbacks.settings import Settings
from esms_callbacks.tasks import app, fetch_callbacks
from tests.helpers import drain_events, in_process_worker


@pytest.fixture
def worker(make_settings, sim) -> Iterator[Settings]:
    with in_process_worker(make_settings()) as settings:
        yield settings


def test_250_refs_become_terminal_events_in_requests_of_at_most_100(worker, sim):
    settings = worker
    sim.set_policy("mixed")
    ref_ids = [f"e2e-{i:04d}" for i in range(250)]

    # when a producer submits them in one call
    fetch_callbacks.delay(ref_ids, "1090257973118325189")

    # expect every RefId to reach a terminal event
    events = drain_events(
        settings.broker_url,
        settings.status_queue,
        want=0,
        timeout_s=60,
        until=lambda got: {e["ref_id"] for e in got if e["terminal"]} >= set(ref_ids),
    )
    terminal = {e["ref_id"]: e for e in events if e["terminal"]}
    assert set(terminal) == set(ref_ids)
    # no eSMS request carried more than 100 RefIds, and the first three asked all 250 in two
    # full requests and one of the rest (drainers in threads beside the in-process simulator:
    # two slots apart, the later one may reach the simulator first on a loaded machine)
    sent = [r.ref_count_sent for r in sim.requests if r.endpoint == "callback"]
    assert max(sent) <= 100
    assert sorted(sent[:3], reverse=True) == [100, 100, 50]
    # events carry the contract's keys, and ids are stable per state
    required = {
        "event_id",
        "ref_id",
        "oa_id",
        "status",
        "terminal",
        "send_status",
        "error",
        "observed_at",
        "record",
    }
    assert all(required <= set(e) for e in events)
    assert {e["status"] for e in terminal.values()} <= {"sent", "failed", "expired"}
    by_state: dict[tuple[str, str], set[str]] = {}
    for e in events:
        by_state.setdefault((e["ref_id"], e["status"]), set()).add(e["event_id"])
    assert all(len(ids) == 1 for ids in by_state.values())


def test_bad_input_fails_at_the_producer_before_queueing(worker, sim):
    with pytest.raises(InvalidSubmission, match="ref_ids must be a list"):
        fetch_callbacks.delay("not-a-list", "oa1")
    with pytest.raises(InvalidSubmission, match="oa_id is missing"):
        fetch_callbacks.delay(["r1"])
    with pytest.raises(InvalidSubmission, match=r"ref_ids\[1\] is blank"):
        fetch_callbacks.delay(["r1", "  "], "oa1")


def test_by_name_bad_input_is_rejected_by_the_worker_and_good_work_goes_on(worker, sim):
    settings = worker
    # a producer without this code sends garbage by name, then a good submission
    app.send_task("esms.fetch_callbacks", kwargs={"ref_ids": [1, 2], "oa_id": "oa1"})
    app.send_task("esms.fetch_callbacks", kwargs={"ref_ids": ["good-1"], "oa_id": "oa1"})

    events = drain_events(settings.broker_url, settings.status_queue, want=1, timeout_s=30)
    assert [e["ref_id"] for e in events] == ["good-1"]
    assert [r.ref_count_sent for r in sim.requests] == [1]
