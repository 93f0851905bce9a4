"""The sweep of eSMS's ledger (ESMS_RECONCILE): adopt, report, the cursor, personal data,
against real Redis and the simulator's GetSmsSentData_V2 over HTTP."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from esms_callbacks.engine.clock import ManualClock
from esms_callbacks.engine.notes import NO_OA
from esms_callbacks.ops.reconcile_report import reconcile_report
from tests.helpers import T0, whereabouts

OA = "oa-ledger"
LEDGER_TERMS = {"ledger_rate_interval_s": 0.01, "repoll_after_s": 10.0}


@pytest.fixture
def ledger(drain_env: Any, sim: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """(drainer, runtime, drainer clock, events, make_sweep): the simulator's messages are
    sent at the drainer's clock (T0); a sweep runs on a clock of its own, two minutes on, so
    that they are past the minute the ledger is left to settle."""

    def build(**changes: Any) -> tuple[Any, Any, ManualClock, list[dict[str, Any]], Any]:
        drainer, runtime, clock, events = drain_env(**{**LEDGER_TERMS, **changes})
        monkeypatch.setattr(sim, "clock", clock.now_s)

        def make_sweep(at_s: float = T0 + 120) -> Any:
            sweep = runtime.ledger_sweep()
            sweep.clock, sweep.publish = ManualClock(at_s), events.extend
            return sweep

        return drainer, runtime, clock, events, make_sweep

    return build


def terminal(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ends = [event for event in events if event["terminal"]]
    assert len(ends) == len({event["ref_id"] for event in ends}), "two terminal events"
    return {event["ref_id"]: event for event in ends}


def test_adopt_takes_in_what_was_sent_but_never_submitted(ledger, sim):
    # given three messages eSMS sent, one of them submitted; one of the others still pending
    drainer, runtime, clock, events, make_sweep = ledger(reconcile="adopt")
    sim.register_messages({"ref_ids": ["given", "lost-sent"], "oa_id": OA})
    sim.register_messages(
        {"ref_ids": ["lost-slow"], "oa_id": OA, "callback_url": False, "final_after_s": 600}
    )
    runtime.backlog.park(OA, ["given"], clock.now_s())

    # when the ledger is swept
    report = make_sweep().sweep(budget_s=30)

    # expect the submitted one settled by the ledger's final state; the lost ones adopted
    # without an OA, the final one ending at once, the pending one waiting
    assert report.caught_up and report.adopted == 2
    seen = {e["ref_id"]: (e["status"], e["terminal"], e["oa_id"], e["source"]) for e in events}
    assert seen == {
        "given": ("sent", True, OA, "reconcile"),
        "lost-sent": ("sent", True, NO_OA, "reconcile"),
        "lost-slow": ("pending", False, NO_OA, "reconcile"),
    }
    assert whereabouts(runtime.backlog, NO_OA, "lost-slow").where == "waiting"
    assert runtime.notes.read(NO_OA, ["lost-slow"])["lost-slow"].by_query

    # and the pending one is asked with QueryZnsStatus (no OA for GetCallback) until final
    clock.advance(700)
    drainer.drain(budget_s=5)
    assert terminal(events)["lost-slow"]["status"] == "sent"
    assert terminal(events)["lost-slow"]["source"] == "query"
    asked = [(r.endpoint, r.sms_id) for r in sim.requests if r.endpoint == "query"]
    assert ("query", "lost-slow") in asked
    assert not any(r.endpoint == "callback" and r.oa_id == NO_OA for r in sim.requests)


def test_a_second_sweep_over_the_same_range_changes_nothing(ledger, sim):
    _, _runtime, _clock, events, make_sweep = ledger(reconcile="adopt", reconcile_overlap_s=3600)
    sim.register_messages({"ref_ids": [f"lost-{n}" for n in range(30)], "oa_id": OA})
    make_sweep().sweep(budget_s=30)
    first = list(events)
    # a later sweep reads the range again (its overlap covers it all): no second event
    report = make_sweep(T0 + 300).sweep(budget_s=30)
    assert report.rows == 30 and report.adopted == 0
    assert events == first
    assert len(terminal(events)) == 30


def test_report_names_the_gaps_and_adopts_nothing(ledger, sim):
    # given one message sent but never submitted, and one submitted that eSMS does not have
    _, runtime, clock, events, make_sweep = ledger(reconcile="report", reconcile_grace_s=60)
    sim.register_messages({"ref_ids": ["lost"], "oa_id": OA})
    runtime.backlog.park(OA, ["ghost"], clock.now_s())
    sim.script("ghost", ["missing"])
    drainer = runtime.drainer()
    drainer.publish, drainer.clock = events.extend, clock
    drainer.drain(budget_s=5)  # asked: eSMS knows nothing of it

    make_sweep().sweep(budget_s=30)

    # expect nothing adopted, and both lists as the command prints them
    assert "lost" not in {e["ref_id"] for e in events}
    found = reconcile_report(runtime, T0 - 3600, T0 + 120)
    assert [gap.ref_id for gap in found.never_submitted] == ["lost"]
    assert [(gap.ref_id, gap.oa_id) for gap in found.no_data_at_esms] == [("ghost", OA)]


def test_the_cursor_goes_on_from_the_page_it_stopped_at(ledger, sim):
    # given 1,200 Zalo normal messages (three pages of SmsType 25; none of 24) and a sweep
    # that may read two pages only (24's, empty, and 25's first)
    _, runtime, _clock, _events, make_sweep = ledger(reconcile="report")
    sim.register_messages({"ref_id_prefix": "many-", "count": 1200, "oa_id": OA})
    pages = iter([True, True, False])
    first = make_sweep().sweep(budget_s=30, keep_going=lambda: next(pages, False))
    assert first.pages == 2 and not first.caught_up

    # when the next sweep runs (a restart in between: nothing but Redis is kept)
    second = make_sweep().sweep(budget_s=30)

    # expect it to go on from page 2, not start again: four pages in all, every row read
    assert second.pages == 2 and second.caught_up
    asked = [r for r in sim.requests if r.endpoint == "ledger"]
    assert len(asked) == 1 + 3
    assert runtime.redis.zcard(runtime.keys.unsubmitted) == 1200


def test_no_phone_number_or_text_leaves_the_ledger(ledger, sim, caplog):
    from esms_callbacks.simulator.outcomes import phone_number_of

    caplog.set_level(logging.DEBUG)
    _, runtime, _clock, events, make_sweep = ledger(reconcile="adopt")
    sim.register_messages({"ref_ids": ["private"], "oa_id": OA})
    make_sweep().sweep(budget_s=30)
    phone = phone_number_of("private")
    shown = json.dumps(events) + caplog.text
    gaps = reconcile_report(runtime, 0, T0 + 120).never_submitted
    shown += json.dumps([gap.__dict__ for gap in gaps])
    assert events and phone not in shown and phone[-9:] not in shown
    answer = sim.requests[-1]  # the simulator did send them, as eSMS does
    assert answer.endpoint == "ledger"


def test_the_task_sweeps_an_account_and_sets_what_metrics_show(make_settings, sim, monkeypatch):
    import time

    from esms_callbacks.ops.metrics import AccountCollector
    from esms_callbacks.ops.status import account_state
    from esms_callbacks.tasks.context import worker_context
    from esms_callbacks.tasks.reconcile import reconcile

    # given a message eSMS sent two minutes ago that nobody submitted
    monkeypatch.setattr(sim, "clock", lambda: time.time() - 120)
    sim.register_messages({"ref_ids": ["lost-by-the-app"], "oa_id": OA})
    settings = make_settings(reconcile="report", **LEDGER_TERMS)
    worker_context.use_settings(settings)
    try:
        # when beat's sweep runs for the account
        result = reconcile.run("default")
        runtime = worker_context.runtimes.default()
        state = account_state(runtime, time.time(), with_status_queue=False)
    finally:
        worker_context.use_settings(None)

    # expect it read the ledger, and the gap in the state metrics are made of
    assert result["caught_up"] and result["rows"] == 1 and result["adopted"] == 0
    assert state["reconcile_never_submitted"] == 1
    assert state["reconcile_no_data_at_esms"] == 0
    names = {metric.name: metric for metric in AccountCollector(lambda: [state]).collect()}
    assert names["esms_reconcile_never_submitted"].samples[0].value == 1


def test_since_takes_a_moment_with_its_offset_or_hours_ago():
    from esms_callbacks.cli.main import since_moment

    assert since_moment("", 10_000.0, 600) == 9_400.0
    assert since_moment("2h", 10_000.0, 600) == 10_000.0 - 7200
    assert since_moment("2026-12-07T01:00+07:00", 0, 0) == since_moment("2026-12-06T18:00Z", 0, 0)
    with pytest.raises(ValueError, match="has no offset"):
        since_moment("2026-12-07T01:00", 0, 0)
    with pytest.raises(ValueError, match="ISO 8601"):
        since_moment("yesterday", 0, 0)


def test_the_reconcile_command_prints_both_lists(ledger, sim, monkeypatch, capsys):
    from esms_callbacks.cli.main import main

    # given a sweep that found one message never submitted
    _, runtime, _, _, make_sweep = ledger(reconcile="report")
    sim.register_messages({"ref_ids": ["lost-in-a-crash"], "oa_id": OA})
    make_sweep().sweep(budget_s=30)
    for name, value in runtime.settings.to_env().items():
        monkeypatch.setenv(name, value)

    # when an operator asks, as text and as JSON
    assert main(["reconcile", "--since", "2020-01-01T00:00Z"]) == 0
    text = capsys.readouterr().out
    assert main(["reconcile", "--since", "2020-01-01T00:00Z", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)

    # expect the RefId and when eSMS sent it, in both
    assert "sent by eSMS, never submitted: 1" in text and "lost-in-a-crash" in text
    assert [gap["ref_id"] for gap in report["never_submitted"]] == ["lost-in-a-crash"]
    assert report["no_data_at_esms"] == []
    assert main(["reconcile", "--since", "yesterday"]) == 2  # a clear error, not a crash


def test_a_refid_adopted_then_submitted_late_gets_one_terminal_event(ledger, sim):
    # given a pending message the sweep adopted (its producer's `.delay()` was late)
    drainer, runtime, clock, events, make_sweep = ledger(reconcile="adopt")
    sim.register_messages({"ref_ids": ["late"], "oa_id": OA, "final_after_s": 600})
    make_sweep().sweep(budget_s=30)

    # when the producer's submission comes at last, under its OA
    parked = runtime.backlog.park(OA, ["late"], clock.now_s())

    # expect it left where it is (waiting, adopted), and one terminal event in the end
    assert (parked.added, parked.already_waiting) == (0, 1)
    clock.advance(700)
    drainer.drain(budget_s=5)
    assert [e["status"] for e in events if e["ref_id"] == "late" and e["terminal"]] == ["sent"]


def test_no_ledger_request_outside_its_window(ledger, sim):
    from esms_callbacks.esms.window import Window

    # given the ledger's window a minute after midnight, and a sweep in the evening
    closed = Window.parse("00:00-00:01", "UTC")
    *_, make_sweep = ledger(reconcile="adopt", ledger_window=closed)
    sim.register_messages({"ref_ids": ["waits"], "oa_id": OA})
    sweep = make_sweep(T0 + 3600 * 5)  # 20:00 in Vietnam (the terms' zone): closed

    report = sweep.sweep(budget_s=30)

    assert report.pages == 0 and "window" in report.stopped
    assert not [r for r in sim.requests if r.endpoint == "ledger"]


def test_a_refid_submitted_between_the_lookup_and_the_claim_is_not_taken_twice(ledger, sim):
    from esms_callbacks.engine.notes import NO_OA as ADOPTED

    # given a RefId the sweep found nowhere, then submitted under its OA before the claim
    _, runtime, clock, _, _ = ledger(reconcile="adopt")
    runtime.backlog.park(OA, ["raced"], clock.now_s())

    # when the sweep's claim of it comes (as if its lookup had found nothing)
    claims = runtime.backlog.claim(
        ADOPTED, ["raced"], clock.now_s(), 60, "sweep", True, unless_elsewhere=True
    )

    # expect it left under its OA: one RefId, one track, one terminal event
    assert [claim.kind for claim in claims] == ["elsewhere"]
    assert whereabouts(runtime.backlog, OA, "raced").where == "waiting"
    assert runtime.backlog.where(ADOPTED, "raced") is None


def test_a_page_ends_its_range_by_count_total_not_by_its_rows():
    from esms_callbacks.engine.ledger_sweep import is_last_page

    assert not is_last_page(1, 499, 1200)  # a full page with one unreadable row skipped
    assert not is_last_page(2, 500, 1200)
    assert is_last_page(3, 200, 1200)
    assert is_last_page(1, 0, 0) and is_last_page(4, 0, 5000)  # nothing more to read


def test_records_older_than_the_done_memory_are_not_read(ledger, sim):
    # given a look-back longer than the done memory (a RefId done then is forgotten since)
    _, runtime, _, _, make_sweep = ledger(
        reconcile="adopt", reconcile_lookback_s=10 * 86400, done_ttl_s=2 * 86400
    )
    make_sweep().sweep(budget_s=30)
    cursor = {
        k.decode(): int(v) for k, v in runtime.redis.hgetall(runtime.keys.ledger_cursor).items()
    }
    # expect the first range to start inside the done memory, not ten days back
    assert cursor["from_ms:25"] >= (T0 + 120 - 2 * 86400) * 1000


def test_a_message_whose_query_keeps_failing_expires_at_its_age(drain_env, sim):
    # given an account asking QueryZnsStatus only, whose host refuses every connection
    drainer, runtime, clock, events = drain_env(
        query_status="only", rest_base_url="http://127.0.0.1:9", max_age_s=600
    )
    runtime.backlog.park(OA, ["unlucky"], clock.now_s())
    drainer.drain(budget_s=5)
    assert events == []
    # when its age is past and it is asked (and fails) once more
    clock.advance(700)
    runtime.breaker_of("query").record_success()  # the breaker lets it through
    drainer.drain(budget_s=5)
    # expect its one last answer: expired, terminal, once
    assert [(e["ref_id"], e["status"], e["terminal"]) for e in events] == [
        ("unlucky", "expired", True)
    ]
