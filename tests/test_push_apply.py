"""Recorded pushes through the state machine: real Redis inbox, leases and settle; a manual clock.

Given pushes recorded in the inbox (as the receiver records them), when the applier applies
them, expect the events a poll would give and the inbox emptied only of what is done.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis

from esms_callbacks.engine.backlog import Backlog
from esms_callbacks.engine.clock import ManualClock
from esms_callbacks.errors import PublishFailed, PushApplyFailed
from esms_callbacks.esms.window import Window
from esms_callbacks.events.publish import event_id
from esms_callbacks.push.applier import AccountInbox, Appliers
from esms_callbacks.push.apply import ApplyReport, PushApplier
from esms_callbacks.push.inbox import InboxEntry, PushInbox, PushRecorder
from esms_callbacks.push.parse import Push, parse_push
from esms_callbacks.runtime import Runtime
from esms_callbacks.settings import Settings
from esms_callbacks.tasks.drain import release_account
from tests.helpers import T0, runtime_of, wait_until

OA = "oa-apply"
CONSUMER = "test-applier"


class Broker:
    """A publish function that takes events, or refuses after `fail_after` of them."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail_after: int | None = None

    def __call__(self, events: list[dict[str, Any]]) -> None:
        if self.fail_after is None:
            self.events += events
            return
        taken = events[: self.fail_after]
        self.events += taken
        raise PublishFailed(len(taken), len(events))


@pytest.fixture
def env(make_settings):
    settings: Settings = make_settings()
    runtime = runtime_of(settings)
    clock = ManualClock(T0)
    broker = Broker()
    inbox = PushInbox(runtime.redis, runtime.keys)
    inbox.ensure_group()
    applier = PushApplier(settings, runtime.account, runtime.backlog, inbox, broker, clock)
    yield settings, runtime, clock, broker, inbox, applier
    runtime.close()


def record(settings: Settings, runtime: Runtime, *pushes: dict[str, str]) -> None:
    """Record pushes as the receiver does (same script, same stream)."""

    async def go() -> None:
        client = aioredis.Redis.from_url(settings.redis_url)
        recorder = PushRecorder(client, runtime.keys, per_source_rate=0, inbox_max=1000)
        for params in pushes:
            assert (await recorder.record(parse_push(params.items()), "127.0.0.1")).ok
        await client.aclose()

    asyncio.run(go())


def pushed(ref_id: str, send_status: int = 5, oa_id: str = OA) -> dict[str, str]:
    return {"SMSID": ref_id, "SendStatus": str(send_status), "SendFailed": "0", "oaid": oa_id}


def test_a_broker_failing_part_way_settles_what_went_out_and_keeps_the_rest(env):
    settings, runtime, clock, broker, inbox, applier = env
    backlog: Backlog = runtime.backlog
    backlog.park(OA, ["a", "b", "c"], clock.now_s())
    record(settings, runtime, pushed("a"), pushed("b"), pushed("c"))

    broker.fail_after = 1
    with pytest.raises(PushApplyFailed):
        applier.apply(inbox.read(CONSUMER, 10, 100))
    assert [e["ref_id"] for e in broker.events] == ["a"]
    assert backlog.park(OA, ["a"], clock.now_s()).already_finished == 1  # settled
    assert inbox.waiting() == 2  # b and c: still in the inbox, pending
    [oa] = backlog.per_oa(clock.now_s())
    assert (oa.waiting, oa.leased) == (2, 0)  # handed back, not held

    broker.fail_after = None  # the broker is back; the receiver reclaims its pending entries
    report = applier.apply(inbox.reclaim(CONSUMER, 0, 10))
    assert report.published == 2
    assert sorted(e["ref_id"] for e in broker.events) == ["a", "b", "c"]
    assert inbox.waiting() == 0
    assert backlog.per_oa(clock.now_s()) == []


def test_a_final_push_wins_over_a_waiting_one_in_the_same_batch(env):
    settings, runtime, clock, broker, inbox, applier = env
    runtime.backlog.park(OA, ["r"], clock.now_s())
    record(settings, runtime, pushed("r", 5), pushed("r", 1))  # eSMS retried the older one
    applier.apply(inbox.read(CONSUMER, 10, 100))
    assert [(e["status"], e["source"]) for e in broker.events] == [("sent", "push")]
    assert inbox.waiting() == 0


def test_a_push_after_the_terminal_event_is_a_counted_duplicate(env):
    settings, runtime, _clock, broker, inbox, applier = env
    record(settings, runtime, pushed("d"))
    applier.apply(inbox.read(CONSUMER, 10, 100))
    record(settings, runtime, pushed("d"), pushed("d", 1))
    report = applier.apply(inbox.read(CONSUMER, 10, 100))
    assert (report.published, report.duplicates) == (0, 2)
    assert len(broker.events) == 1
    assert runtime.redis.hget(runtime.keys.stats, "pushes_applied:duplicate") == b"2"


def test_a_refid_held_by_a_request_is_left_for_later(env):
    settings, runtime, clock, _broker, inbox, applier = env
    backlog = runtime.backlog
    backlog.park(OA, ["h"], clock.now_s())
    assert backlog.lease_next(clock.now_s(), 10, 60, "a-request") is not None
    record(settings, runtime, pushed("h"))
    report = applier.apply(inbox.read(CONSUMER, 10, 100))
    assert (report.deferred, report.published, inbox.waiting()) == (1, 0, 1)
    # the request ends (pending, back to wait); the entry is reclaimed and applied
    backlog.unlease(OA, "a-request", ["h"], clock.now_s())
    assert applier.apply(inbox.reclaim(CONSUMER, 0, 10)).published == 1
    assert inbox.waiting() == 0


def test_an_expiry_decided_before_a_crash_stands_against_a_later_push(env):
    settings, runtime, clock, broker, inbox, applier = env
    backlog = runtime.backlog
    backlog.park(OA, ["x"], clock.now_s())
    backlog.lease_next(clock.now_s(), 10, 1, "died")
    backlog.decide(OA, "died", {"x": "expired:"})  # then the worker died; the lease ran out
    clock.advance(5)
    record(settings, runtime, pushed("x"))
    applier.apply(inbox.read(CONSUMER, 10, 100))
    assert [e["status"] for e in broker.events] == ["expired"]


def test_an_entry_that_is_not_a_push_is_dropped_and_the_others_applied(env):
    settings, runtime, _clock, _broker, inbox, applier = env
    runtime.redis.xadd(runtime.keys.pushes, {"push": "not json", "received_ms": "1"})
    record(settings, runtime, pushed("ok"))
    report = applier.apply(inbox.read(CONSUMER, 10, 100))
    assert (report.unreadable, report.published, inbox.waiting()) == (1, 1, 0)


def test_inbox_entries_keep_the_push_as_parsed():
    push = parse_push(pushed("p").items())
    assert push == Push("p", OA, {"SMSID": "p", "SendStatus": 5, "SendFailed": 0, "OAId": OA})


def test_a_polled_final_state_published_before_a_crash_stands_against_a_later_push(env):
    settings, runtime, clock, broker, inbox, applier = env
    backlog = runtime.backlog
    backlog.park(OA, ["x"], clock.now_s())
    # a drainer recorded `sent` (as it does right before publishing), published, then died
    backlog.lease_next(clock.now_s(), 10, 1, "died")
    backlog.renew(OA, "died", ["x"], clock.now_s() + 1, {"x": "sent:5"})
    clock.advance(5)  # its lease ran out
    # when eSMS pushes a different final state for it
    record(settings, runtime, {**pushed("x"), "SendStatus": "4", "SendFailed": "1"})
    applier.apply(inbox.read(CONSUMER, 10, 100))
    # expect the state already published again (same event_id), not a second terminal state
    [event] = broker.events
    assert (event["status"], event["event_id"]) == ("sent", event_id("x", OA, "sent:5"))


def test_a_pushed_final_state_published_before_a_crash_stands_against_a_later_poll(drain_env, sim):
    drainer, runtime, clock, events = drain_env()
    backlog = runtime.backlog
    backlog.park(OA, ["y"], clock.now_s())
    # an applier claimed a pushed `failed`, recorded it, published, then died
    [claimed] = backlog.claim(OA, ["y"], clock.now_s(), 1, "died", True)
    assert claimed.kind == "waiting"
    backlog.decide(OA, "died", {"y": "failed:4"})
    clock.advance(5)
    # when the poll asks eSMS, whose GetCallback still says pending
    sim.script("y", ["pending7"])
    drainer.drain(budget_s=5)
    # expect the pushed state again, same event_id, and the RefId settled
    assert [(e["status"], e["event_id"]) for e in events] == [
        ("failed", event_id("y", OA, "failed:4"))
    ]
    assert backlog.per_oa(clock.now_s()) == []


def test_the_applier_thread_outlives_a_lost_group_and_an_unexpected_error(env, monkeypatch):
    settings, runtime, _clock, broker, inbox, applier = env
    monkeypatch.setattr("esms_callbacks.push.applier.APPLIER_RETRY_MOST_S", 0.2)
    real_apply, calls = applier.apply, []

    def apply_failing_once(entries: list[InboxEntry]) -> ApplyReport:
        calls.append(len(entries))
        if len(calls) == 1:
            raise ValueError("a bug nobody foresaw")
        report: ApplyReport = real_apply(entries)
        return report

    applier.apply = apply_failing_once
    thread = Appliers(runtime.redis, reclaim_after_s=0.2)
    thread.serve(
        {runtime.keys.account_id: AccountInbox("a", runtime.keys.account_id, inbox, applier)}
    )
    thread.start()
    try:
        record(settings, runtime, pushed("u1"))
        wait_until(lambda: [e["ref_id"] for e in broker.events] == ["u1"], 10, "u1 applied")
        # when Redis loses the stream and its group (restarted empty), then a push comes
        runtime.redis.delete(runtime.keys.pushes)
        record(settings, runtime, pushed("u2"))
        wait_until(lambda: len(broker.events) == 2, 10, "u2 applied")
        assert thread.healthy()
    finally:
        thread.stop(within_s=5)
    assert not thread.healthy()


def test_an_oa_only_a_forged_push_named_is_forgotten_after_the_done_memory(make_settings):
    # given a push (forged, or a producer's bug) naming an OA nothing was ever submitted for,
    # published and remembered as done for 60 s, and an OA with a RefId still waiting (for
    # the window, closed at T0: the housekeeping alone runs)
    settings = make_settings(done_ttl_s=60, window=Window.parse("01:00-02:00"))
    runtime = runtime_of(settings)
    clock = ManualClock(T0)
    runtime.clock = clock  # type: ignore[assignment]  # the housekeeping's clock, moved by hand
    inbox = PushInbox(runtime.redis, runtime.keys)
    inbox.ensure_group()
    broker = Broker()
    applier = PushApplier(settings, runtime.account, runtime.backlog, inbox, broker, clock)
    record(settings, runtime, pushed("f1", oa_id="forged-oa"))
    assert applier.apply(inbox.read(CONSUMER, 10, 100)).published == 1
    runtime.backlog.park(OA, ["w1"], clock.now_s())
    assert runtime.backlog.known_oa_ids() == ["forged-oa", OA]

    # when beat's housekeeping runs once its done memory ran out
    clock.advance(61)
    release_account(runtime)

    # expect that OA and every key of it gone; the OA with a RefId waiting kept
    assert runtime.backlog.known_oa_ids() == [OA]
    assert list(runtime.redis.scan_iter(match=f"{runtime.keys.oa('forged-oa')}*")) == []
    runtime.close()


def test_a_push_for_a_refid_adopted_from_the_ledger_starts_no_second_track(env):
    from esms_callbacks.engine.notes import NO_OA

    # given a RefId never submitted that the ledger's sweep adopted (under OA `-`), waiting
    settings, runtime, clock, broker, inbox, applier = env
    runtime.backlog.claim(NO_OA, ["adopted"], clock.now_s(), 60, "sweep", True)
    runtime.backlog.unlease(NO_OA, "sweep", ["adopted"], clock.now_s() + 600)

    # when eSMS's push for it arrives, naming its OA
    record(settings, runtime, pushed("adopted"))
    report = applier.apply(inbox.read(CONSUMER, 10, 100))

    # expect no event from the push and nothing under that OA: the adopted track goes on
    assert broker.events == [] and report.published == 0
    assert runtime.backlog.where(OA, "adopted") is None
    assert runtime.backlog.where(NO_OA, "adopted") is not None
