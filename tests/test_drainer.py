"""The drain loop with an injected clock: asking again, expiry, merging, faults, accounts.

Real Redis and the simulator over real HTTP; only time is the test's (a manual clock), with
the limiter's spacing at 1 ms so its real-time checks never hold a test up.
"""

from __future__ import annotations

from typing import Any

import pytest

from workers.clock import ManualClock
from workers.drainer import Drainer, DrainReport, Retry
from workers.errors import TransientError
from workers.runtime import Runtime

T0 = 1_800_000_000.0  # a fixed epoch second for the manual clock


@pytest.fixture
def drain_env(make_settings, sim):
    published: list[dict[str, Any]] = []
    runtimes: list[Runtime] = []

    def build(**changes: Any) -> tuple[Drainer, Runtime, ManualClock, list[dict[str, Any]]]:
        settings = make_settings(rate_interval_s=0.001, rate_margin_s=0.0, **changes)
        runtime = Runtime(settings)
        runtimes.append(runtime)
        clock = ManualClock(T0)
        drainer = Drainer(
            settings,
            runtime.redis,
            runtime.backlog,
            runtime.limiter,
            runtime.ask,
            published.extend,
            clock,
            retry_delay_s=lambda: 5.0,
        )
        return drainer, runtime, clock, published

    yield build
    for runtime in runtimes:
        runtime.close()


def statuses(events: list[dict[str, Any]], ref_id: str) -> list[str]:
    return [e["status"] for e in events if e["ref_id"] == ref_id]


def test_pending_ref_is_asked_again_after_the_delay_then_sent(drain_env, sim):
    # given a RefId that is pending twice, then sent
    drainer, runtime, clock, events = drain_env(repoll_after_s=900, max_age_s=86400)
    sim.script("r1", ["pending7", "pending7", "sent"])
    runtime.backlog.park("oa1", ["r1"], clock.now_s())

    # when drained now: one pending event, and the RefId waits
    assert drainer.drain(budget_s=5).stopped == "nothing due"
    assert statuses(events, "r1") == ["pending"]
    # before the delay: nothing is due
    clock.advance(899)
    assert drainer.drain(budget_s=5).requests == 0
    # after it: asked again, same state, so no new event
    clock.advance(2)
    assert drainer.drain(budget_s=5).requests == 1
    assert statuses(events, "r1") == ["pending"]
    # and once more: sent, terminal, forgotten
    clock.advance(901)
    drainer.drain(budget_s=5)
    assert statuses(events, "r1") == ["pending", "sent"]
    assert events[-1]["terminal"] is True
    assert sim.asked("r1") == 3
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_never_found_ref_expires_after_max_age_with_one_last_ask(drain_env, sim):
    # given a RefId eSMS never knows, a max age of one hour, asked every 15 minutes
    drainer, runtime, clock, events = drain_env(repoll_after_s=900, max_age_s=3600)
    sim.script("ghost", ["missing"])
    runtime.backlog.park("oa1", ["ghost"], clock.now_s())

    # when time passes in steps of the re-ask delay
    for _ in range(6):
        drainer.drain(budget_s=5)
        clock.advance(900)

    # expect not_found once (no repeat for the same state), then expired, once, at 1 h
    assert statuses(events, "ghost") == ["not_found", "expired"]
    expired = events[-1]
    assert expired["terminal"] is True and expired["record"] is None
    assert sim.asked("ghost") == 5  # at 0, 15, 30, 45 and 60 minutes
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_small_submissions_leave_in_full_requests(drain_env, sim):
    # given 100 submissions of 3 RefIds each while no request went out
    drainer, runtime, clock, events = drain_env()
    for i in range(100):
        runtime.backlog.park("oa1", [f"s{i}-{j}" for j in range(3)], clock.now_s())

    # when drained
    report = drainer.drain(budget_s=5)

    # expect 300 RefIds in 3 requests of 100, each with its terminal event
    assert report.requests == 3
    assert [r.ref_count_sent for r in sim.requests] == [100, 100, 100]
    assert len({e["ref_id"] for e in events if e["terminal"]}) == 300


def test_oldest_oa_goes_first_and_requests_never_mix_oas(drain_env, sim):
    drainer, runtime, clock, events = drain_env()
    runtime.backlog.park("oa-old", ["a1", "a2"], clock.now_s() - 10)
    runtime.backlog.park("oa-new", ["b1"], clock.now_s())
    drainer.drain(budget_s=5)
    assert [r.oa_id for r in sim.requests] == ["oa-old", "oa-new"]
    assert {e["oa_id"] for e in events if e["ref_id"].startswith("a")} == {"oa-old"}


def test_transient_fault_puts_refs_back_and_asks_for_a_retry(drain_env, sim):
    # given eSMS answering HTTP 500 once
    drainer, runtime, clock, events = drain_env()
    sim.add_fault("http500")
    runtime.backlog.park("oa1", ["f1", "f2"], clock.now_s())

    # when drained: a Retry after the backoff, nothing published, RefIds waiting again
    with pytest.raises(Retry) as caught:
        drainer.drain(budget_s=5)
    assert isinstance(caught.value.cause, TransientError) and caught.value.after_s == 5.0
    assert events == []
    (oa,) = runtime.backlog.per_oa(clock.now_s())
    assert (oa.waiting, oa.due_now, oa.leased) == (2, 0, 0)

    # and after the backoff they are asked and sent
    clock.advance(5)
    drainer.drain(budget_s=5)
    assert sorted(e["ref_id"] for e in events if e["status"] == "sent") == ["f1", "f2"]


def test_auth_failure_pauses_the_account_and_keeps_the_refs(drain_env, sim, redis_client):
    drainer, runtime, clock, events = drain_env(account_pause_s=60)
    sim.add_fault("code", code=101, message="Sai ApiKey hoac SecretKey")
    runtime.backlog.park("oa1", ["k1"], clock.now_s())

    assert drainer.drain(budget_s=5).stopped == "account paused"
    # a second drain sends nothing while paused
    assert drainer.drain(budget_s=5) == DrainReport(stopped="account paused")
    assert len(sim.requests) == 1
    (oa,) = runtime.backlog.per_oa(clock.now_s())
    assert oa.due_now == 1

    # once the pause is over (credentials fixed), work resumes
    redis_client.delete(runtime.keys.paused)
    drainer.drain(budget_s=5)
    assert statuses(events, "k1") == ["sent"]


def test_closed_window_sends_nothing(drain_env, sim):
    from workers.window import Window

    drainer, runtime, clock, _events = drain_env(window=Window.parse("01:00-02:00", "UTC"))
    clock.now = 1_800_000_000.0 - (1_800_000_000 % 86400) + 3 * 3600  # 03:00 UTC
    runtime.backlog.park("oa1", ["w1"], clock.now_s())
    assert drainer.drain(budget_s=5).stopped == "window closed"
    assert sim.requests == []


def test_garbage_in_an_answer_is_skipped_and_harms_no_other_refid(drain_env, caplog):
    # given eSMS answering with odd records around one good one
    from workers.esms_client import parse_answer

    drainer, runtime, clock, events = drain_env()
    body = {
        "Code": 100,
        "Message": "Success",
        "Data_callback": [
            "not a record",
            {"SendStatus": 5},  # no SMSID
            {"SMSID": "never-asked", "SendStatus": 5},
            {"SMSID": "odd", "SendStatus": "five", "SendFailed": None, "Extra": [1, 2]},
            {"SMSID": "good", "SendStatus": 5, "SendFailed": 0, "TypeId": "25"},
            {"SMSID": "good", "SendStatus": 5, "SendFailed": 0, "TypeId": "25"},
        ],
    }
    import json

    def ask(ref_ids, oa_id, gate):
        assert gate()
        return parse_answer(json.dumps(body), set(ref_ids))

    drainer.ask = ask
    runtime.backlog.park("oa1", ["good", "odd", "esms:{x}:oas", "*"], clock.now_s())

    # when drained
    drainer.drain(budget_s=5)

    # expect the good one sent, the odd one pending (asked again), key-looking RefIds just
    # not found yet, and each piece of garbage named in a log line
    by_ref = {e["ref_id"]: e["status"] for e in events}
    assert by_ref == {
        "good": "sent",
        "odd": "pending",
        "esms:{x}:oas": "not_found",
        "*": "not_found",
    }
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 4, skipped
    (oa,) = runtime.backlog.per_oa(clock.now_s())
    assert oa.waiting == 3  # odd and the two key-looking ones wait to be asked again


def test_a_stale_lease_holder_publishes_nothing(drain_env, sim):
    # given a request so slow that its lease expires and another drainer takes the RefId over
    drainer, runtime, clock, events = drain_env(max_age_s=86400)
    other, *_ = drain_env(max_age_s=86400)
    other.clock = clock
    sim.script("slow-1", ["pending7", "sent"])
    runtime.backlog.park("oa1", ["slow-1"], clock.now_s())
    ask = drainer.ask

    def slow_ask(ref_ids, oa_id, gate):
        answer = ask(ref_ids, oa_id, gate)  # eSMS says pending...
        clock.advance(runtime.settings.lease_s + 1)  # ...but too late: the lease expired
        other.drain(budget_s=5)  # the other drainer asks again and gets "sent"
        return answer

    drainer.ask = slow_ask

    # when the slow holder finally handles its (stale) answer
    drainer.drain(budget_s=5)

    # expect only the current holder's event: one terminal, no "pending" after "sent"
    assert [(e["ref_id"], e["status"]) for e in events] == [("slow-1", "sent")]
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_not_ready_backs_off_those_refs_and_expires_them_at_max_age(drain_env, sim):
    from workers.errors import NotReady

    drainer, runtime, clock, events = drain_env(max_age_s=100)
    runtime.backlog.park("oa1", ["nr-1"], clock.now_s())
    # Code 105 for the whole request: a retry later, no event yet
    sim.add_fault("code", code=105)
    with pytest.raises(Retry) as caught:
        drainer.drain(budget_s=5)
    assert isinstance(caught.value.cause, NotReady)
    assert events == []
    # past max age, the next 105 ends it: expired, once
    clock.advance(101)
    sim.add_fault("code", code=105)
    drainer.drain(budget_s=5)
    assert [(e["ref_id"], e["status"]) for e in events] == [("nr-1", "expired")]
    assert runtime.backlog.per_oa(clock.now_s()) == []


def test_a_refid_that_already_finished_is_not_asked_again(drain_env, sim):
    drainer, runtime, clock, events = drain_env(done_ttl_s=3600)
    runtime.backlog.park("oa1", ["once"], clock.now_s())
    drainer.drain(budget_s=5)
    assert [e["status"] for e in events] == ["sent"]
    # resubmitted within the done memory: nothing waits, nothing is asked
    parked = runtime.backlog.park("oa1", ["once", "new"], clock.now_s())
    assert (parked.added, parked.already_finished) == (1, 1)
    # after it, a resubmission is a new submission
    clock.advance(3601)
    assert runtime.backlog.park("oa1", ["once"], clock.now_s()).added == 1


def test_broker_failing_part_way_settles_what_went_out_and_hands_back_the_rest(drain_env, sim):
    from workers.events import PublishFailed

    # given three RefIds answered "sent", and a broker that takes only the first event
    drainer, runtime, clock, events = drain_env()
    runtime.backlog.park("oa1", ["p1", "p2", "p3"], clock.now_s())

    def flaky_publish(batch):
        events.extend(batch[:1])
        raise PublishFailed(1, len(batch))

    drainer.publish = flaky_publish

    # when drained: a retry, one event out, that RefId done, the other two waiting again
    with pytest.raises(Retry):
        drainer.drain(budget_s=5)
    assert [e["ref_id"] for e in events] == ["p1"]
    (oa,) = runtime.backlog.per_oa(clock.now_s())
    assert (oa.waiting, oa.leased) == (2, 0)

    # and once the broker is back, the other two get their events, p1 is not asked again
    drainer.publish = events.extend
    clock.advance(5)
    drainer.drain(budget_s=5)
    assert sorted(e["ref_id"] for e in events) == ["p1", "p2", "p3"]
    assert sim.asked("p1") == 1
